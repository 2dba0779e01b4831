"""The ``workbench`` command line: thin subcommands over the Python API."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workbench import __version__
from workbench.errors import WorkbenchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Locate, edit and evaluate factual knowledge in transformer language models.",
    )
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    story = commands.add_parser("story", help="run the end-to-end story on the bundled fact model")
    story.add_argument("--model", default="factgpt", help="model name or directory (default: factgpt)")
    story.set_defaults(handler=_run_story)
    return parser


def _run_story(args: argparse.Namespace) -> int:
    from workbench.story import run_story

    run_story(args.model)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.handler(args)
    except WorkbenchError as error:
        print(f"workbench: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
