"""TF-IDF + logistic regression: the baseline shown beside every classification figure.

scikit-learn's defaults, as a user moving from it would write them: TfidfVectorizer()
(lower-cased words of 2+ characters, smooth idf, l2-normalised rows) and
LogisticRegression(max_iter=1000) (L2, C=1), fitted on the same training split as the
RNN. The fitted vocabulary, idf and coefficients travel in the checkpoint meta as JSON,
so `rnnq eval` scores the same baseline on new data without a pickle:

    counts (N, V) --* idf, l2 rows--> x (N, V) --> x @ coef.T + intercept (N, C or 1) --> argmax
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MAX_FEATURES = 50_000  # keeps the checkpoint header small on large corpora (most frequent terms kept)


@dataclass(frozen=True)
class Baseline:
    vocabulary: list[str]  # term of each column
    idf: list[float]
    coef: list[list[float]]  # (1, V) for two classes (positive = the second), else (C, V)
    intercept: list[float]
    classes: list[int]  # class ids of coef's rows (of the two columns for binary)

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Baseline:
        return cls(**meta)

    def predict(self, texts: list[str]) -> list[int]:
        """Class ids of texts."""
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        if not texts:
            return []
        counts = CountVectorizer(vocabulary={t: i for i, t in enumerate(self.vocabulary)}).transform(texts)
        x = normalize(counts.multiply(np.asarray(self.idf)[None, :]).tocsr())
        scores = x @ np.asarray(self.coef).T + np.asarray(self.intercept)
        if scores.shape[1] == 1:
            picks = (scores[:, 0] > 0).astype(int)
        else:
            picks = scores.argmax(axis=1)
        return [self.classes[int(i)] for i in picks]


def fit(texts: list[str], labels: list[int]) -> Baseline | None:
    """Fit on the training split; None when no text has a 2-character word to count."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(max_features=MAX_FEATURES)
    try:
        x = vectorizer.fit_transform(texts)
    except ValueError:  # empty vocabulary
        return None
    model = LogisticRegression(max_iter=1000).fit(x, labels)
    vocabulary = [""] * len(vectorizer.vocabulary_)
    for term, i in vectorizer.vocabulary_.items():
        vocabulary[i] = term
    return Baseline(vocabulary=vocabulary, idf=[float(v) for v in vectorizer.idf_],
                    coef=model.coef_.tolist(), intercept=model.intercept_.tolist(),
                    classes=[int(c) for c in model.classes_])
