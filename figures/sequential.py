"""Regenerate the sequential-editing figure on smollm2-135m: MEMIT, AlphaEdit and UltraEdit, batch after batch.

    python figures/sequential.py [--methods memit,alphaedit] [--batches 4] [--batch-size 100] [--replot]
    python figures/sequential.py --data cities --batches 20 --scored-per-batch 10
    python figures/sequential.py --data cities --methods ultraedit:100 --scored-per-batch 10 --measure-every 10 \
        --fluency-tokens 0 --set ultraedit.lr=1e-3 --set ultraedit.span=3
    python figures/sequential.py --data cities --methods memit:20,alphaedit:20,ultraedit:100 --scored-per-batch 10 --replot

A method may carry its own number of batches (``ultraedit:100``; else ``--batches``) and its own
settings (``--set METHOD.NAME=VALUE``, passed to ``workbench sequential --set``).

Writes, under figures/:
  sequential_<method>_[cities_]<batches>x<batch size>.json   one run per method (``workbench sequential``)
  sequential_smollm2[_cities].png                             every metric after every batch, one line per method
``--replot`` redraws from the saved JSON files without running anything. Each run writes the first
batches x batch-size cases of the benchmark's evaluation split (733 cases), or of the city requests
(``--data cities``), with the record's tuned settings, and measures never-edited cases after them and
perplexity on the statistics corpus's last 50 texts. On 2 CPU cores 4 batches of 100 take about 10
minutes per method; 20 batches of 100 cities, 10 of each batch scored, about 45.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from workbench.cli import main as workbench_cli  # noqa: E402
from workbench.evaluate.sequential import SequentialResult  # noqa: E402
from workbench.plot.sequential import plot_sequential  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the sequential-editing figure.")
    parser.add_argument("--methods", default="memit,alphaedit")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--data", choices=("evaluation", "cities"), default="evaluation")
    parser.add_argument("--scored-per-batch", type=int, help="score the first N cases of each batch (default: all)")
    parser.add_argument("--measure-every", type=int, default=1, help="measure after every N batches and the last")
    parser.add_argument("--fluency-tokens", type=int, help="tokens per fluency generation (0: skip; default: the CLI's)")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.NAME=VALUE",
                        help="a hyper-parameter of one method, e.g. ultraedit.lr=1e-3")
    parser.add_argument("--replot", action="store_true", help="redraw from the saved JSON files")
    args = parser.parse_args()
    tag = "cities_" if args.data == "cities" else ""
    results = []
    for spec in args.methods.split(","):
        method, _, batches = spec.partition(":")
        batches = int(batches or args.batches)
        name = f"sequential_{method}_{batches}x{args.batch_size}.json"
        path = HERE / name.replace(f"{method}_", f"{method}_{tag}")
        if not args.replot:
            with tempfile.TemporaryDirectory() as out:
                command = ["sequential", "--model", "smollm2-135m", "--method", method, "--batches", str(batches),
                           "--batch-size", str(args.batch_size), "--measure-every", str(args.measure_every), "--out", out]
                if args.data == "cities":
                    command += ["--data", "cities"]
                if args.scored_per_batch:
                    command += ["--scored-per-batch", str(args.scored_per_batch)]
                if args.fluency_tokens is not None:
                    command += ["--fluency-tokens", str(args.fluency_tokens)]
                for setting in args.set:
                    owner, _, assignment = setting.partition(".")
                    if owner == method:
                        command += ["--set", assignment]
                workbench_cli(command)
                shutil.move(Path(out) / name, path)
        results.append(SequentialResult.load(path))
    plot_sequential(results).savefig(HERE / f"sequential_smollm2{'_cities' if tag else ''}.png", dpi=120)


if __name__ == "__main__":
    main()
