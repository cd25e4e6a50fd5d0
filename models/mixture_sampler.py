"""The mixture's component draw, fast on the CPU and exactly what ``torch.multinomial`` draws.

M samples one of its Gaussian components per latent dimension at every dream step; ``torch.multinomial`` on the
softmax is the slow part of a dream at K = 5. ``components`` draws the same components from the same torch
generator, leaving it in the same state, by replaying torch's Mersenne Twister (MT19937) in numba-compiled loops.
"""
from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np
import torch

# Below this, exp() of a float32 leaves the normal range (e^-87.3 is float32's smallest normal number), where
# its relative error is no longer a few units in the last place.
_EXP_SAFE = -80.0


def components(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One component per row of ``logits`` (..., K) → (rows, 1) int64: exactly what
    ``torch.multinomial(torch.softmax(logits, -1).reshape(-1, K), 1, generator=generator)`` returns, with the
    generator left in the same state.

    On the CPU that call is the Gumbel-max trick: q ~ Exp(1) drawn by ``exponential_`` on a tensor shaped like
    the probabilities p (q = −log1p(−u), u uniform), then argmax_k p_k / q_k. Here the same u are drawn from the
    generator (``_uniforms``) and the argmax is taken on logit_k − log q_k (in float64), which orders the
    candidates as p_k / q_k does without the softmax and the scalar log1p, the slow parts at K = 5. Where a
    runner-up is within the rounding error of float32's p_k / q_k (its bound, ``_runner_up_margin``, is kept
    generous), the row is settled with the softmax and the exact quotient, as multinomial computes them; that
    is a few rows in 100,000. On other devices and dtypes, for logits that are not all finite (multinomial
    raises on those), and with a generator this does not reproduce (``_reproduces_exponential``), this calls
    multinomial itself.
    """
    flat = logits.detach().reshape(-1, logits.shape[-1])
    # A finite sum means every logit is finite (an inf or a NaN anywhere makes it inf or NaN).
    on_cpu = flat.device.type == "cpu" and (generator is None or generator.device.type == "cpu")
    if not on_cpu or flat.dtype != torch.float32 or not math.isfinite(flat.sum()) or not _reproduces_exponential():
        return torch.multinomial(torch.softmax(flat, dim=-1), 1, generator=generator)
    compiled = _compiled()
    u = _uniforms(generator, flat.numel()).reshape(flat.shape)
    picked = np.empty(len(flat), dtype=np.int64)
    unsure = np.empty(len(flat), dtype=np.bool_)
    compiled.argmax(flat.numpy(), _log_exponentials(u), picked, unsure)
    rows = np.flatnonzero(unsure)
    if len(rows):
        index = torch.from_numpy(rows)
        q = torch.from_numpy(compiled.exponentials(u[rows]))
        picked[rows] = (torch.softmax(flat[index], dim=-1) / q).argmax(-1).numpy()
    return torch.from_numpy(picked).view(-1, 1)


def _log_exponentials(u: np.ndarray) -> np.ndarray:
    """log q for q = −log1p(−u), in float32 to within a few units in the last place: from u itself below 1/2,
    from 1 − u (exact in float64) above, so neither end loses precision to float32's rounding of u."""
    below, above = (torch.from_numpy(a) for a in _compiled().split(u))
    return torch.log1p(below).add_(torch.log(above)).neg_().log_().numpy()


def _runner_up_margin(dx_best: float, dx: float, log_q_best: float, log_q: float) -> float:
    """How close (in log p / q) a runner-up may come to the best before float32 rounding could reorder them:
    float32's x − max (2⁻²⁴ relative each), exp (a few units in the last place), the product with 1/Σ and the
    quotient by q, and the float32 log q of the comparison here (a few units), with a wide margin."""
    return 1e-5 + 2.0 ** -22 * (abs(dx_best) + abs(dx) + abs(log_q_best) + abs(log_q))


# torch's CPU generator, as ``Generator.get_state()`` lays it out: a Mersenne Twister (MT19937) whose countdown to
# its next twist is an int32 at byte 8, the index of its next word a uint64 at byte 16, and its 624 words one
# uint64 each from byte 24.
_LEFT, _NEXT, _WORDS, _MT_N = 8, 16, 24, 624
_MT_M = 397  # the twister's middle distance


def _uniforms(generator: torch.Generator | None, n: int) -> np.ndarray:
    """The n uniforms u in [0, 1) (float64) behind ``torch.empty(n).exponential_(generator=generator)``: each from
    two 32-bit words of the twister (53 bits), q = −log1p(−u); the generator is advanced past them, as that
    call leaves it."""
    generator = generator if generator is not None else torch.default_generator
    state = generator.get_state()
    raw = state.numpy()
    words = raw[_WORDS: _WORDS + 8 * _MT_N].view(np.uint64)
    left, index = raw[_LEFT: _LEFT + 4].view(np.int32), raw[_NEXT: _NEXT + 8].view(np.uint64)
    twister = words.astype(np.uint32)
    position = np.array([left[0], index[0]], dtype=np.int64)
    u = np.empty(n)
    _compiled().uniforms(twister, position, u)
    words[:], left[0], index[0] = twister, position[0], position[1]
    generator.set_state(state)
    return u


@functools.cache
def _reproduces_exponential() -> bool:
    """Whether ``_uniforms`` and ``exponentials`` give what this torch's ``exponential_`` gives, bit for bit, and
    leave the generator in the same state (checked once, across several of the twister's regenerations)."""
    ours, theirs = torch.Generator().manual_seed(2018), torch.Generator().manual_seed(2018)
    torch.empty(5).exponential_(generator=ours)
    torch.empty(5).exponential_(generator=theirs)
    mine = _compiled().exponentials(_uniforms(ours, 5000))
    return (np.array_equal(mine, torch.empty(5000).exponential_(generator=theirs).numpy())
            and torch.equal(ours.get_state(), theirs.get_state()))


@functools.cache
def _compiled() -> SimpleNamespace:
    """The compiled loops of ``components`` (compiled on first use, so importing M does not load numba)."""
    from numba import njit

    margin = njit(_runner_up_margin)

    @njit(cache=True)
    def mix(mt, i, nxt, far):
        """Word i of MT19937's regeneration, from words i, nxt = i + 1 and far = i + 397 (mod 624); the odd bit's
        matrix applied without a branch."""
        y = (mt[i] & np.uint32(0x80000000)) | (mt[nxt] & np.uint32(0x7FFFFFFF))
        mt[i] = mt[far] ^ (y >> np.uint32(1)) ^ ((np.uint32(0) - (y & np.uint32(1))) & np.uint32(0x9908B0DF))

    @njit(cache=True)
    def twist(mt):
        """MT19937's regeneration of its 624 words, in the three runs whose neighbours need no wrap-around test
        (ten times faster than testing every word)."""
        for i in range(_MT_N - _MT_M):
            mix(mt, i, i + 1, i + _MT_M)
        for i in range(_MT_N - _MT_M, _MT_N - 1):
            mix(mt, i, i + 1, i + _MT_M - _MT_N)
        mix(mt, _MT_N - 1, 0, _MT_M - 1)

    @njit(cache=True)
    def uniforms(mt, position, out):
        """out (n,) ← uniforms as torch's CPU generator draws doubles; mt, position = (left, next) advanced.

        A draw that finds ``left`` at 1 regenerates the words first and takes word 0, leaving ``left`` at 624;
        so ``left`` − 1 words are ready at any time, taken here in runs."""
        words = np.empty(2 * out.size, dtype=np.uint32)
        left, index, done = position[0], position[1], 0
        while done < words.size:
            if left == 1:
                twist(mt)
                left, index = _MT_N + 1, 0
            run = min(left - 1, words.size - done)
            for j in range(run):
                y = mt[index + j]
                y ^= y >> np.uint32(11)
                y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
                y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
                y ^= y >> np.uint32(18)
                words[done + j] = y
            left, index, done = left - run, index + run, done + run
        for i in range(out.size):
            bits = (np.uint64(words[2 * i]) << np.uint64(32)) | np.uint64(words[2 * i + 1])
            out[i] = np.float64(bits & np.uint64((1 << 53) - 1)) * (1.0 / 9007199254740992.0)
        position[0], position[1] = left, index

    @njit(cache=True)
    def exponentials(u):
        """q = float32(−log1p(−u)), as ``exponential_`` computes it."""
        flat = u.ravel()
        q = np.empty(flat.size, dtype=np.float32)
        for i in range(flat.size):
            q[i] = np.float32(-math.log1p(-flat[i]))
        return q.reshape(u.shape)

    @njit(cache=True)
    def split(u):
        """(−u below 1/2, else 0; 1 − u above, else 1) in float32: log1p of the one plus log of the other is
        log(1 − u), each end computed where float32 keeps its precision."""
        flat = u.ravel()
        below = np.empty(flat.size, dtype=np.float32)
        above = np.empty(flat.size, dtype=np.float32)
        for i in range(flat.size):  # selects, not branches: u is random, a branch would mispredict half the time
            v = flat[i]
            low = v < 0.5
            below[i] = np.float32(-v) if low else np.float32(0.0)
            above[i] = np.float32(1.0) if low else np.float32(1.0 - v)
        return below.reshape(u.shape), above.reshape(u.shape)

    @njit(cache=True)
    def argmax(x, log_q, picked, unsure):
        """x, log_q (rows, K) float32 → picked (rows,): argmax_k x_k − log_q_k (the first on a tie); unsure (rows,):
        a runner-up within ``margin`` of it, or a best whose probability is below exp's safe range. Written
        without branches on the data (selects and masks), which halves its time on random picks."""
        rows, k = x.shape
        for r in range(rows):
            xr, lr = x[r], log_q[r]
            top, best = np.float64(xr[0]), 0
            score = np.float64(xr[0]) - np.float64(lr[0])
            for j in range(1, k):
                v = np.float64(xr[j])
                top = max(top, v)
                s = v - np.float64(lr[j])
                best = j if s > score else best
                score = max(s, score)
            dx_best = np.float64(xr[best]) - top
            close = dx_best < _EXP_SAFE
            for j in range(k):
                # below exp's safe range, p_j is at most what it is at the range's edge
                dx = max(np.float64(xr[j]) - top, _EXP_SAFE)
                gap = score - (dx + top - np.float64(lr[j]))
                close |= (j != best) & (not gap > margin(dx_best, dx, np.float64(lr[best]), np.float64(lr[j])))
            picked[r] = best
            unsure[r] = close

    return SimpleNamespace(uniforms=uniforms, exponentials=exponentials, split=split, argmax=argmax)
