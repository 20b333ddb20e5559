"""Quality benchmarks of the tutorial's applications; each prints one JSON object.

    python benchmarks/quality.py --task classify   --data-dir ../shared/data/sentiment_labelled_sentences [--test-domain imdb]
    python benchmarks/quality.py --task forecast   [--dataset airline co2 ... | all] [--seed N]
    python benchmarks/quality.py --task translate  [--data-dir ../shared/data/multi30k_en_fr --budget S]
    python benchmarks/quality.py --task transcribe --corpus DIR [--budget S]   (DIR from benchmarks/speech_data.py)
    python benchmarks/quality.py --task lm         [--data ../shared/data/republic_clean.txt --tokenizer both]

Each task's script (benchmarks/quality_<task>.py) documents its split, budget, seed,
anchor and target; arguments after --task go to it.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

TASKS = ("lm", "classify", "forecast", "translate", "transcribe")


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "--task" or args[1] not in TASKS:
        sys.exit(__doc__)
    script = Path(__file__).with_name(f"quality_{args[1]}.py")
    sys.argv = [str(script), *args[2:]]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
