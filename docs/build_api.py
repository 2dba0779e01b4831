"""Build the API reference of the workbench from its docstrings with pdoc, failing on any warning.

    python docs/build_api.py [OUTPUT_DIRECTORY]      (default: docs/api)
"""
from __future__ import annotations

import pkgutil
import sys
import warnings
from pathlib import Path

import pdoc

import workbench
import workbench.edit


def module_names() -> list[str]:
    """The package and its modules. ``workbench.edit`` is a callable module, which pdoc documents
    as a function of ``workbench``, so its submodules are listed one by one."""
    top = [f"workbench.{m.name}" for m in pkgutil.iter_modules(workbench.__path__) if m.name != "edit"]
    editing = [f"workbench.edit.{m.name}" for m in pkgutil.iter_modules(workbench.edit.__path__)]
    return ["workbench", *top, *editing]


def build(output: Path) -> list[str]:
    """Write the HTML reference to ``output``; return pdoc's warnings (an empty list when clean)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.render.configure(docformat="google", footer_text="workbench API reference")
        pdoc.pdoc(*module_names(), output_directory=output)
    return [f"{w.category.__name__}: {w.message}" for w in caught]


if __name__ == "__main__":
    problems = build(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "api"))
    for problem in problems:
        print(problem, file=sys.stderr)
    sys.exit(1 if problems else 0)
