"""The docs: the API reference builds without warnings, every public name is documented, every
method module cites its paper, and the docs' internal links resolve."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"
spec = importlib.util.spec_from_file_location("build_api", DOCS / "build_api.py")
build_api = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_api)

METHOD_MODULES = [
    "workbench.locate.tracing", "workbench.locate.effects", "workbench.locate.patching",
    "workbench.locate.attribution", "workbench.locate.token_attribution", "workbench.locate.neurons",
    "workbench.locate.kn_analysis", "workbench.locate.memories", "workbench.locate.subject_swap",
    "workbench.edit.rome", "workbench.edit.memit", "workbench.edit.alphaedit", "workbench.edit.ultraedit",
    "workbench.edit.kn", "workbench.edit.finetune", "workbench.edit.caching", "workbench.edit.serac",
    "workbench.edit.scope", "workbench.edit.mend", "workbench.edit.stats", "workbench.edit.targets",
    "workbench.edit.contexts", "workbench.evaluate.metrics", "workbench.evaluate.fluency", "workbench.evaluate.generation",
    "workbench.easyedit",
    "workbench.evaluate.scaling", "workbench.evaluate.sequential", "workbench.zoo.mass_requests",
]
CITATION = re.compile(r"et al\.,? \(?(19|20)\d\d|\((19|20)\d\d\)|et al\. (19|20)\d\d")


def test_api_reference_builds_without_warnings(tmp_path):
    assert build_api.build(tmp_path) == []
    assert (tmp_path / "workbench" / "edit" / "memit.html").is_file()


def _public_members(module_name: str):
    module = importlib.import_module(module_name)
    for name, member in vars(module).items():
        if name.startswith("_") or getattr(member, "__module__", None) != module_name:
            continue
        if inspect.isfunction(member) or inspect.isclass(member):
            yield name, member


@pytest.mark.parametrize("module_name", build_api.module_names()[1:])
def test_every_public_function_and_class_has_a_docstring(module_name):
    missing = [name for name, member in _public_members(module_name) if not inspect.getdoc(member)]
    assert not missing, f"{module_name}: no docstring on {missing}"


@pytest.mark.parametrize("module_name", METHOD_MODULES)
def test_method_modules_cite_their_paper(module_name):
    assert CITATION.search(importlib.import_module(module_name).__doc__ or ""), f"{module_name} cites no paper"


def test_relative_links_in_the_docs_resolve():
    broken = []
    for page in [*DOCS.rglob("*.md"), DOCS.parent / "README.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.name} -> {target}")
    assert not broken, broken
