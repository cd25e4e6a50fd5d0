"""Pillow's bilinear ``Image.resize`` of a uint8 RGB image, compiled: the same bytes, without Pillow's per-call cost.

CarRacing's preprocessing (``envs.carracing.crop_resize``) shrinks 84 × 96 frames to 64 × 64 with Pillow's
``BILINEAR`` filter, for every frame of every real step. This module redoes the arithmetic of Pillow's 8-bit
resampling (``libImaging/Resample.c``) in a compiled kernel whose passes run over whole rows in SIMD lanes, so its
frames are byte for byte Pillow's, in about half the time of a Pillow call (``bench/bench.py --only precision``):

- Each output pixel of a pass reads the input pixels ``xmin .. xmin + n`` around its centre ``(i + 0.5) * scale``,
  with the triangle filter stretched by ``max(scale, 1)``: support ``max(scale, 1)``, weights
  ``1 - |(x - centre + 0.5) / max(scale, 1)|`` (clipped at 0), normalised to sum 1 in double precision, then
  rounded to 22-bit fixed point (``round half away from zero``).
- The horizontal pass runs first, on the input rows the vertical pass will read, into a uint8 image; the vertical
  pass then reads that. Each sum starts at half a unit (``1 << 21``), and the result is the sum shifted right by 22
  bits (an arithmetic shift: floor), clipped to 0 .. 255.

``tests/test_resample.py`` compares it with the installed Pillow (``requirements.lock``) on random images of several
shapes and on CarRacing frames; a Pillow whose arithmetic changed would fail it.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

BITS = 22  # fixed-point bits of a weight: 32 - 8 - 2, so that a sum of 8-bit pixels fits a 32-bit int


@functools.cache
def weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One pass's plan, in_size → out_size: (out_size, 2) first input index and count per output pixel, and
    (out_size, K) their fixed-point weights as the kernel multiplies them, int32 (zero past the count)."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    support = stretch  # the triangle's support is 1
    taps = int(math.ceil(support)) * 2 + 1
    bounds = np.zeros((out_size, 2), np.int64)
    fixed = np.zeros((out_size, taps), np.int32)
    for i in range(out_size):
        centre = (i + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        count = min(int(centre + support + 0.5), in_size) - first
        w = [max(1.0 - abs((x + first - centre + 0.5) * (1.0 / stretch)), 0.0) for x in range(count)]
        total = 0.0
        for v in w:  # summed in order, as the double it is normalised by
            total += v
        for x, v in enumerate(w):
            v = v / total if total != 0.0 else v
            fixed[i, x] = int(v * (1 << BITS) + (0.5 if v >= 0 else -0.5))
        bounds[i] = first, count
    return bounds, fixed


@njit(cache=True)
def _resize(images, out, hb, hw, vb, vw):  # pragma: no cover  (compiled; tested against Pillow)
    """Both passes, each as sums of whole rows times one weight, in 32-bit ints (a sum of 8-bit pixels times
    weights that add up to 1 << BITS fits), so the compiler runs them in SIMD lanes: the horizontal pass on the
    image transposed (a column of the output is a weighted sum of input columns), the vertical pass on rows."""
    half = np.int32(1 << (BITS - 1))
    top = vb[0, 0]
    rows = vb[vb.shape[0] - 1, 0] + vb[vb.shape[0] - 1, 1] - top
    height, width, channels = vb.shape[0], hb.shape[0], images.shape[3]
    columns = np.empty((images.shape[2], rows * channels), np.int32)  # input column x: its rows' pixels, in order
    across = np.empty((width, rows * channels), np.uint8)  # the horizontal pass's output, column by column
    temp = np.empty((rows, width * channels), np.int32)  # the same, row by row
    acc_h = np.empty(rows * channels, np.int32)
    acc_v = np.empty(width * channels, np.int32)
    for n in range(images.shape[0]):
        for y in range(rows):
            for x in range(images.shape[2]):
                for c in range(channels):
                    columns[x, y * channels + c] = images[n, y + top, x, c]
        for j in range(width):
            acc_h[:] = half
            for t in range(hb[j, 1]):
                w, col = hw[j, t], columns[hb[j, 0] + t]
                for k in range(acc_h.size):
                    acc_h[k] += col[k] * w
            for k in range(acc_h.size):
                across[j, k] = min(max(acc_h[k] >> BITS, 0), 255)
        for y in range(rows):
            for j in range(width):
                for c in range(channels):
                    temp[y, j * channels + c] = across[j, y * channels + c]
        for i in range(height):
            acc_v[:] = half
            for t in range(vb[i, 1]):
                w, row = vw[i, t], temp[vb[i, 0] - top + t]
                for k in range(acc_v.size):
                    acc_v[k] += row[k] * w
            flat = out[n, i].reshape(acc_v.size)
            for k in range(acc_v.size):
                flat[k] = min(max(acc_v[k] >> BITS, 0), 255)


def resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, H, W, C) uint8 → (N, height, width, C) uint8, as Pillow's ``Image.resize((width, height), BILINEAR)``
    gives for each image (any strides: a crop is read in place)."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"resize takes (N, H, W, C) uint8 images, not {images.dtype} {images.shape}")
    hb, hw = weights(images.shape[2], width)
    vb, vw = weights(images.shape[1], height)
    out = np.empty((images.shape[0], height, width, images.shape[3]), np.uint8)
    _resize(images, out, hb, hw, vb, vw)
    return out
