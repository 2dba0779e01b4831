"""Every exception the workbench raises on purpose.

Each class says what went wrong in the user's terms; its message says what to do.
All derive from :class:`WorkbenchError`, so ``except WorkbenchError`` catches them, and each
also derives from the built-in exception a caller would expect (``ValueError``, ``LookupError``).
"""
from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of the workbench's own errors."""


class ModelNotFoundError(WorkbenchError, FileNotFoundError):
    """No model could be found under the given name or path."""


class UnsupportedModelError(WorkbenchError, ValueError):
    """The model's family is not one the workbench knows how to hook and edit."""


class LayerOutOfRangeError(WorkbenchError, IndexError):
    """A layer index outside ``0 .. n_layers - 1``."""


class InvalidRequestError(WorkbenchError, ValueError):
    """An edit request whose fields cannot describe an edit, e.g. an empty subject or target."""


class PromptTemplateError(InvalidRequestError):
    """A prompt template without exactly one ``{}`` slot for the subject."""


class SubjectNotInPromptError(InvalidRequestError):
    """The subject does not occur in the question it should be cut out of to make a template."""


class DatasetFormatError(WorkbenchError, ValueError):
    """A dataset file or record that does not follow its format: invalid JSON, a missing key, a wrong type."""


class PromptTooLongError(WorkbenchError, ValueError):
    """A prompt with more tokens than the model's context window."""


class TargetAlreadyPredictedError(InvalidRequestError):
    """An edit whose new target is already what the model predicts: there is nothing to change."""


class SettingsDamagedError(WorkbenchError, ValueError):
    """A calibrated settings folder whose files do not match their checksums (edited, truncated, partial)."""


class SettingsMismatchError(WorkbenchError, ValueError):
    """Calibrated settings measured on other weights than the model's."""


class TooFewKnownFactsError(WorkbenchError, ValueError):
    """A model that answers too few facts of the knowledge base to calibrate or benchmark on."""
