"""Classification figures from a confusion matrix (rows = true class, columns = predicted)."""

from __future__ import annotations

from collections.abc import Iterable


def confusion(true: Iterable[int], predicted: Iterable[int], n_classes: int) -> list[list[int]]:
    matrix = [[0] * n_classes for _ in range(n_classes)]
    for t, p in zip(true, predicted, strict=True):
        matrix[t][p] += 1
    return matrix


def accuracy(matrix: list[list[int]]) -> float:
    total = sum(map(sum, matrix))
    return sum(matrix[i][i] for i in range(len(matrix))) / total if total else 0.0


def macro_f1(matrix: list[list[int]]) -> float:
    """Mean F1 over the classes that occur as a true or a predicted label.

    A class absent from both (say, a rare label missing from a small test file) says
    nothing about the model and is left out, as scikit-learn's default does.
    """
    scores = []
    for c in range(len(matrix)):
        support = sum(matrix[c])
        predicted = sum(row[c] for row in matrix)
        if support == 0 and predicted == 0:
            continue
        scores.append(2 * matrix[c][c] / (support + predicted))  # = 2PR / (P + R)
    return sum(scores) / len(scores) if scores else 0.0
