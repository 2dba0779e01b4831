"""Can a fact be rewritten? Weight edits that can be inspected, undone, saved and replayed.

The package is itself callable: ``workbench.edit(model, requests, method="rome")`` is
:func:`workbench.edit.api.edit`, while ``workbench.edit.stats``, ``workbench.edit.rome`` ... stay
importable submodules.
"""
import sys
import types

from workbench.edit.api import edit
from workbench.edit.saved import SavedEdit, load_edit
from workbench.edit.session import EditResult


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return edit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

__all__ = ["EditResult", "SavedEdit", "edit", "load_edit"]
