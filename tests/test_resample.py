"""envs.resample: Pillow's bilinear resize, compiled, byte for byte."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT  # noqa: F401  (puts the project on sys.path)
from envs import carracing
from envs.resample import resize


def pillow(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


@pytest.mark.parametrize("shape, out", [((84, 96), (64, 64)), ((96, 96), (64, 64)), ((210, 160), (64, 64)),
                                        ((50, 40), (64, 80)), ((64, 64), (64, 64)), ((7, 300), (5, 31))])
def test_resize_gives_pillows_bytes_on_random_images(shape, out):
    rng = np.random.default_rng(sum(shape + out))
    images = rng.integers(0, 256, (60, *shape, 3), dtype=np.uint8)
    images[:20] = (images[:20] >= 128) * np.uint8(255)  # black and white only: the sums at their extremes
    images[20:25] = 255
    np.testing.assert_array_equal(resize(images, *out), np.stack([pillow(i, *out) for i in images]))


def test_crop_resize_gives_pillows_bytes_on_carracing_frames():
    """Frames of real episodes, cropped in place (a strided view) as the pipeline crops them."""
    env = carracing.CarRacing().make(60)
    frames = []
    for seed in (0, 1):
        obs, _ = env.reset(seed=seed)
        for t in range(60):
            obs, *_ = env.step(np.array([np.sin(t / 7), 0.6, 0.0], np.float32))
            frames.append(obs)
    env.close()
    got = np.stack([carracing.crop_resize(f) for f in frames])
    want = np.stack([pillow(f[: carracing.CROP_ROWS], carracing.FRAME, carracing.FRAME) for f in frames])
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(want)) > 50  # real frames, with their colours, not a blank screen


def test_resize_takes_uint8_images_only():
    with pytest.raises(ValueError, match="uint8"):
        resize(np.zeros((1, 8, 8, 3), np.float32), 4, 4)
