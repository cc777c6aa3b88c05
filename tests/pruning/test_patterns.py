"""Patterns on the canonical (P, I, O) view, checked against NumPy references."""

import numpy as np
import pytest

from tfcompress.pruning import Block, Channels, NofM, Unstructured


def test_unstructured_prunes_exactly_the_smallest(rng):
    s = rng.random((3, 7, 5))
    m = Unstructured().compute_mask(s, 0.4)
    k = round(0.4 * s.size)
    threshold = np.sort(s.ravel())[k - 1]
    np.testing.assert_array_equal(m, (s > threshold).astype("float32"))


@pytest.mark.parametrize("block", [(1, 4), (1, 16), (2, 2)])
def test_block_masks_are_constant_within_blocks(rng, block):
    r, c = block
    s = rng.random((2, 32, 8))
    m = Block(block).compute_mask(s, 0.5)
    blocks = m.reshape(2, 32 // c, c, 8 // r, r)
    assert np.all(blocks.min(axis=(2, 4)) == blocks.max(axis=(2, 4)))
    assert m.mean() == pytest.approx(0.5, abs=1e-9)
    # the kept blocks are those with the highest mean score
    means = s.reshape(2, 32 // c, c, 8 // r, r).mean(axis=(2, 4)).ravel()
    kept = blocks.max(axis=(2, 4)).ravel() > 0
    assert means[kept].min() >= means[~kept].max()


def test_block_handles_non_divisible_dims(rng):
    m = Block((1, 4)).compute_mask(rng.random((1, 10, 3)), 0.5)
    assert m.shape == (1, 10, 3)
    assert np.all(m[:, 8:10, :].min(axis=1) == m[:, 8:10, :].max(axis=1))


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (4, 8)])
def test_n_of_m_every_group_has_at_most_n_nonzeros(rng, n, m):
    s = rng.random((9, 4 * m + 3, 6))  # + a partial group
    mask = NofM(n, m).compute_mask(s, 0.9)  # capped at 1 - n/m
    for start in range(0, s.shape[1], m):
        group = mask[:, start:start + m, :]
        assert np.all(group.sum(axis=1) <= n)
        full = group.shape[1] == m
        if full:
            assert np.all(group.sum(axis=1) == n)
            # the kept ones are the n largest of each group
            top = np.sort(s[:, start:start + m, :], axis=1)[:, m - n, :]
            assert np.all((s[:, start:start + m, :] >= top[:, None, :]) == (group > 0))


def test_n_of_m_ramps_with_the_schedule(rng):
    s = rng.random((1, 8, 4))
    assert NofM(2, 4).compute_mask(s, 0.0).sum() == s.size
    assert NofM(2, 4).compute_mask(s, 0.25).sum() == s.size * 3 / 4


def test_channels_prunes_whole_output_channels_by_l1(rng):
    s = rng.random((3, 5, 10))
    m = Channels().compute_mask(s, 0.3)
    l1 = s.sum(axis=(0, 1))
    pruned = np.argsort(l1)[:3]
    np.testing.assert_array_equal(np.where(m.max(axis=(0, 1)) == 0)[0], np.sort(pruned))
    assert np.all(m.min(axis=(0, 1)) == m.max(axis=(0, 1)))


@pytest.mark.parametrize("bad", [(0, 4), (1,), "1x4", (1, 4.0)])
def test_block_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="block_shape"):
        Block(bad)


@pytest.mark.parametrize("n, m", [(4, 4), (0, 4), (2.0, 4)])
def test_n_of_m_rejects_bad_arguments(n, m):
    with pytest.raises(ValueError):
        NofM(n, m)
