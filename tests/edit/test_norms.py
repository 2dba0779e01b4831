"""Mapping a wanted residual change back through a post-MLP norm (Gemma 3's RMSNorm, gain 1 + w)."""
from __future__ import annotations

import torch
from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm

from workbench.edit.norms import _rms_form, invert_norm


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


def test_an_rms_norm_is_inverted_at_the_best_point_of_its_sphere():
    """Two dimensions, checked against a scan of the whole reachable circle: at the current output's mean
    square s the outputs are g * u with |u|^2 = 2 s / (s + eps), u = (cos t, sin t) * radius."""
    norm = _norm(2)
    assert _rms_form(norm, torch.ones(1, 2, dtype=torch.float64)) is not None
    gain = 1.0 + norm.weight.double()
    torch.manual_seed(1)
    for _ in range(5):
        current, change = torch.randn(1, 2, dtype=torch.float64) * 0.1, torch.randn(1, 2, dtype=torch.float64) * 3
        with torch.no_grad():
            wanted = norm(current).double() + change
            solution = invert_norm(norm, current, change)
        square = current.pow(2).mean()
        torch.testing.assert_close(solution.pow(2).mean(), square)  # the output's scale is kept
        angles = torch.linspace(0, 2 * torch.pi, 200_001, dtype=torch.float64)
        circle = torch.stack([angles.cos(), angles.sin()], -1) * (2 * square / (square + norm.eps)).sqrt()
        best = (gain * circle - wanted).pow(2).sum(-1).min()
        reached = (gain * solution / (square + norm.eps).sqrt() - wanted).pow(2).sum()
        assert best - 1e-6 <= reached <= best + 1e-6


def test_a_norm_of_another_form_is_inverted_numerically():
    torch.manual_seed(0)
    norm = torch.nn.LayerNorm(16).double()
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.2)
        norm.bias.normal_(0.0, 0.2)
    current, other = torch.randn(3, 16, dtype=torch.float64), torch.randn(3, 16, dtype=torch.float64)
    assert _rms_form(norm, current) is None  # it subtracts the mean and adds a bias
    with torch.no_grad():
        solution = invert_norm(norm, current, norm(other) - norm(current))
        torch.testing.assert_close(norm(solution), norm(other), atol=1e-4, rtol=1e-4)
