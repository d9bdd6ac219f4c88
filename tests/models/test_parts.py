"""SetPooling (psi), the part every family pools with."""

import pytest
import torch

from mmsets.models.parts import SetPooling

REFERENCE = {
    "max": lambda x: x.max(dim=0).values,
    "min": lambda x: x.min(dim=0).values,
    "sum": lambda x: x.sum(dim=0),
    "mean": lambda x: x.mean(dim=0),
}


def scatter_sets(sets, s_max, generator):
    """Put each set's elements at random positions of an (S_max, D) block; junk everywhere else."""
    d = sets[0].shape[1]
    x = torch.full((len(sets), s_max, d), 1e9)
    x[:, ::2] = -1e9  # junk of both signs, so neither max nor min can hide a leak
    mask = torch.zeros(len(sets), s_max, dtype=torch.bool)
    for b, s in enumerate(sets):
        slots = torch.randperm(s_max, generator=generator)[: len(s)]
        x[b, slots] = s
        mask[b, slots] = True
    return x, mask


@pytest.mark.parametrize("reduction", ["max", "min", "sum", "mean"])
def test_masked_pooling_equals_unpadded_and_ignores_order(reduction):
    g = torch.Generator().manual_seed(0)
    sets = [torch.randn(k, 6, generator=g) for k in (3, 1, 5, 2, 7)]
    pool = SetPooling(reduction)
    pooled, index = pool(*scatter_sets(sets, 9, g))
    reshuffled, _ = pool(*scatter_sets([s[torch.randperm(len(s), generator=g)] for s in sets], 11, g))
    for b, s in enumerate(sets):
        expected = REFERENCE[reduction](s)
        if reduction in ("max", "min"):  # selection is exact
            assert torch.equal(pooled[b], expected)
            assert torch.equal(reshuffled[b], expected)
        else:
            torch.testing.assert_close(pooled[b], expected, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(reshuffled[b], expected, rtol=1e-6, atol=1e-6)
    assert (index is None) == (reduction in ("sum", "mean"))


@pytest.mark.parametrize("reduction", ["max", "min"])
def test_pooling_index_points_at_the_chosen_real_element(reduction):
    g = torch.Generator().manual_seed(1)
    x, mask = scatter_sets([torch.randn(k, 4, generator=g) for k in (2, 4, 1)], 6, g)
    pooled, index = SetPooling(reduction)(x, mask)
    assert torch.equal(x.gather(1, index.unsqueeze(1)).squeeze(1), pooled)
    assert mask.gather(1, index).all()


@pytest.mark.parametrize("reduction", ["max", "min", "sum", "mean"])
def test_empty_set_pools_to_zeros(reduction):
    x = torch.full((2, 3, 4), 1e9)
    mask = torch.tensor([[False, False, False], [True, False, False]])
    pooled, _ = SetPooling(reduction)(x, mask)
    assert torch.equal(pooled[0], torch.zeros(4))
