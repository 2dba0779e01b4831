"""The story's three locate steps (one causal trace, the average indirect effect, knowledge neurons)
timed in one process with the story's own settings, in float32 and in the compute dtype the story
script uses (bfloat16 for smollm2-135m), one after the other.

    python benchmarks/story_locate_speed.py [--model smollm2-135m] [--out FILE]
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import matplotlib

import workbench
from workbench import story

from report import emit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", choices=sorted(story.SCRIPTS))
    parser.add_argument("--out", help="also write the report to this JSON file")
    args = parser.parse_args()
    matplotlib.use("Agg")
    model = workbench.load_model(args.model)
    script = story.SCRIPTS[args.model]
    figures = story._Figures(Path(tempfile.mkdtemp()), args.model)
    seconds = {}
    for dtype in dict.fromkeys(("float32", script.locate_dtype)):
        timed = dataclasses.replace(script, locate_dtype=dtype)
        steps = {"trace": lambda: story._trace_one(model, timed, figures),
                 "average effect": lambda: story._average_effect(model, timed.n_facts, timed, figures),
                 "neurons": lambda: story._neurons(model, timed, figures)}
        seconds[dtype] = {}
        for name, step in steps.items():
            started = time.perf_counter()
            with redirect_stdout(StringIO()):
                step()
            seconds[dtype][name] = time.perf_counter() - started
    report = {"model": args.model, "trace_samples": script.trace_samples, "facts": script.n_facts,
              "average_kinds": list(script.average_kinds), "seconds": seconds}
    emit(report, args.out)


if __name__ == "__main__":
    main()
