"""Mapping a wanted residual change back through a post-MLP norm (Gemma 3's RMSNorm, gain 1 + w)."""
from __future__ import annotations

import torch
from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm

from workbench.edit.norms import invert_norm


def _norm(width: int) -> Gemma3RMSNorm:
    torch.manual_seed(0)
    norm = Gemma3RMSNorm(width)
    with torch.no_grad():
        norm.weight.normal_(0.0, 0.5)
    return norm


def test_a_reachable_output_is_reached():
    norm = _norm(16)
    current, other = torch.randn(3, 16, dtype=torch.float64) * 4, torch.randn(3, 16, dtype=torch.float64) * 4
    with torch.no_grad():
        wanted = norm(other) - norm(current)
        solution = invert_norm(norm, current, wanted)
        torch.testing.assert_close(norm(solution), norm(other), atol=1e-4, rtol=1e-4)


def test_an_unreachable_output_is_approached_as_closely_as_the_sphere_allows():
    """With gain g, the outputs are g * u with |u| = sqrt(d): the nearest to a wanted w is g * u*
    with u* the point of that sphere nearest to w / g in the g-weighted norm, at least no farther
    than the radial projection sqrt(d) (w / g) / |w / g|."""
    norm = _norm(16)
    current = torch.randn(2, 16, dtype=torch.float64) * 4
    change = torch.randn(2, 16, dtype=torch.float64) * 3
    with torch.no_grad():
        wanted = norm(current) + change
        gain = 1.0 + norm.weight.double()
        radial = gain * 16 ** 0.5 * (wanted / gain) / (wanted / gain).norm(dim=-1, keepdim=True)
        reached = norm(invert_norm(norm, current, change))
    assert torch.all((reached - wanted).norm(dim=-1) <= (radial - wanted).norm(dim=-1) + 1e-4)
    assert torch.all((reached - wanted).norm(dim=-1) < change.norm(dim=-1))  # closer than doing nothing
