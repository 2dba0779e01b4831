"""Regenerate the subject-swap figure: where a bundled model holds a subject's attributes.

    python figures/subject_swap.py [--cases 300] [--model factgpt|smollm2-135m]

Writes, under figures/:
  subject_swap_<model>.png    share of answers flipped to a donor's by patching the subject's last
                              token, or the last token, per layer
  subject_swap_<model>.json   the result behind it
Cases: the first of the model's benchmark (smollm2-135m: its evaluation split). Deterministic: fixed
cases, no sampling.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import workbench  # noqa: E402
from workbench.locate.subject_swap import subject_swap  # noqa: E402
from workbench.models import record_of  # noqa: E402

HERE = Path(__file__).parent
SPLITS = {"smollm2-135m": "evaluation", "factgpt": None}


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the subject-swap figure.")
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--model", default="factgpt", choices=sorted(SPLITS))
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    result = subject_swap(model, record_of(model).benchmark(args.cases, split=SPLITS[args.model]))
    result.save(HERE / f"subject_swap_{args.model}.json")
    result.plot().savefig(HERE / f"subject_swap_{args.model}.png", dpi=120)
    print(f"{args.model}, {result.n_cases} cases: subject's last token {result.subject_last.round(2).tolist()}, "
          f"last token {result.last.round(2).tolist()}")


if __name__ == "__main__":
    main()
