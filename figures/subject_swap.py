"""Regenerate the subject-swap figure: where the bundled model holds a subject's attributes.

    python figures/subject_swap.py [--cases 300] [--model factgpt]

Writes, under figures/:
  subject_swap.png            share of answers flipped to a donor's by patching the subject's last
                              token, or the last token, per layer
  subject_swap_<model>.json   the result behind it
Deterministic: fixed cases, no sampling.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import workbench  # noqa: E402
from workbench.locate.subject_swap import subject_swap  # noqa: E402
from workbench.zoo.benchmark import benchmark  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the subject-swap figure.")
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--model", default="factgpt")
    args = parser.parse_args()
    result = subject_swap(workbench.load_model(args.model), benchmark("factgpt", args.cases))
    result.save(HERE / f"subject_swap_{Path(args.model).name}.json")
    result.plot().savefig(HERE / "subject_swap.png", dpi=120)
    print(f"{args.model}, {result.n_cases} cases: subject's last token {result.subject_last.round(2).tolist()}, "
          f"last token {result.last.round(2).tolist()}")


if __name__ == "__main__":
    main()
