"""Subject-swap curves: share of answers that become the donor's, per layer, for patches at the
subject's last token and at the last token."""
from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from workbench.locate.subject_swap import SubjectSwapResult

LABELS = {"subject_last": "subject's last token (where ROME writes)", "last": "last token"}


def plot_subject_swap(result: SubjectSwapResult, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Two lines against the residual-stream layer (0 = embeddings; the last = after the last block)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.4), constrained_layout=True)
    for site, colour in (("subject_last", "C2"), ("last", "C0")):
        ax.plot(result.layers, 100 * getattr(result, site), marker="o", color=colour, label=LABELS[site])
    ax.set_xlabel("residual stream entering layer (last: after the final block)")
    ax.set_ylabel("answers flipped to the donor's (%)")
    ax.set_ylim(-3, 103)
    ax.set_xticks(result.layers)
    ax.set_title(title or f"subject-swap patching, {result.n_cases} cases", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return ax.figure
