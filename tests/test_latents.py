"""M's training windows and batches."""
from __future__ import annotations

import numpy as np

from data.latents import LatentEpisode, batch, windows


def episode(i: int, length: int, z: int = 2) -> LatentEpisode:
    t = np.arange(length + 1, dtype=np.float32)[:, None].repeat(z, 1)
    return LatentEpisode(i, t, np.full((length + 1, z), -30.0, np.float32), np.ones((length, 1), np.float32),
                         np.arange(length, dtype=np.float32), np.arange(length) == length - 1)


def test_windows_cover_long_episodes_without_near_duplicates():
    rng = np.random.default_rng(0)
    eps = [episode(0, 1000), episode(1, 30), episode(2, 3000), episode(3, 2500)]
    w = windows(eps, 999, rng)
    assert [s for i, s in w if i == 0] in ([0], [1])
    assert [(i, s) for i, s in w if i == 1] == [(1, 0)]
    def covered(i):
        return set().union(*(range(s, s + 999) for j, s in w if j == i))

    assert len([s for i, s in w if i == 2]) == 3 and len(covered(2)) == 2997  # back to back, 3 steps left out
    assert len([s for i, s in w if i == 3]) == 3 and covered(3) == set(range(2500))


def test_batch_aligns_inputs_targets_and_masks_padding():
    eps = [episode(0, 5), episode(1, 12)]
    b = batch(eps, [(0, 0), (1, 4)], seq_len=8, rng=np.random.default_rng(0))
    # logvar −30: z equals mu up to ~1e-6, and mu at frame t is t
    np.testing.assert_allclose(b["z"][0, :5, 0], [0, 1, 2, 3, 4], atol=1e-4)
    np.testing.assert_allclose(b["z_next"][0, :5, 0], [1, 2, 3, 4, 5], atol=1e-4)
    np.testing.assert_array_equal(b["mask"][0], [1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_allclose(b["z"][1, :, 0], np.arange(4, 12), atol=1e-4)
    np.testing.assert_array_equal(b["rewards"][1], np.arange(4, 12))
    assert b["dones"][0, 4] == 1 and b["dones"][0].sum() == 1
    assert b["actions"].shape == (2, 8, 1) and float(b["actions"][0, 5:].abs().sum()) == 0
