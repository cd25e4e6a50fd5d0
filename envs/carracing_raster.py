"""Numba kernels behind ``FastCarRacing``: the scene drawn and shrunk in x exactly as pygame-ce 2.5.8 does it.

Gymnasium's CarRacing draws every polygon of its scene with ``gfxdraw.aapolygon`` then ``gfxdraw.filled_polygon``
(SDL_gfx's ``aapolygonRGBA`` and ``filledPolygonRGBAMT``), the car with ``pygame.draw.polygon``, on a 1000×800
canvas, and shrinks the window with ``pygame.transform.smoothscale``, whose x pass is ``filter_shrink_X_SSE2`` on
x86. The kernels here redo the same integer arithmetic, in the same order, on the same 32-bit ``0x00RRGGBB``
pixels, so every pixel they produce is the one pygame would produce:

- gfxdraw's ``aapolygon`` is ``_aalineColor(..., draw_endpoint=0)`` on each edge: Cohen-Sutherland clipping with
  its float32 slope and Sint16 truncations, the opaque first pixel, the vertical/horizontal special cases, and the
  Wu loop with its 32-bit error accumulator, whose pixels go through ``_putPixelAlpha``'s 32-bpp blend, which per
  channel comes to ``d + ((c - d) * a >> 8)`` with ``a = 255 * weight >> 8``.
- ``filled_polygon`` is ``filledPolygonColorMT``: per row, 16.16 fixed-point edge crossings in 32-bit ints,
  sorted, paired, rounded as ``(v >> 16) + ((v & 32768) >> 15)``, then ``hlineColor``'s Sint16 arguments, swap
  and clipping.
- ``draw.polygon`` is pygame's ``draw_fillpoly``: float32 crossings, floored and ceiled alternately.
- The x pass is ``filter_shrink_X_SSE2`` (the x86 and ARM backend, ``get_smoothscale_backend()`` "SSE2" or
  "NEON"; ``FastCarRacing`` checks): with ``xspace = 0x4000 * src_w // dst_w``, output pixel j sums the
  source pixels from the "boundary" pixel of output j - 1 to its own, whose positions and 14-bit weights depend
  only on the widths (``shrink_schedule``), as ``((carry + sum + (4p * xcounter >> 16)) * xrecip) >> 16``.

Every one of these operations works on one canvas row at a time, so the canvas can be drawn in bands of rows,
each band with all operations in the parent's order, and shrunk in x while it is in cache (``render``). Canvas rows
above ``bar`` (later covered by the dashboard) are not drawn at all. Two shortcuts skip work whose result cannot
show, without changing any pixel:

- An anti-aliased pixel of a polygon's edge that falls inside the same polygon's fill span on that row is not
  blended: the fill, drawn right after the polygon's edges, overwrites it.
- Computing every output pixel of the x pass from its ~11 source pixels would cost as much as pygame. Instead the
  drawing flags, per row, the output pixels whose source range holds two neighbouring pixels that may differ
  (exactly one output holds both pixels of a pair: ``first[x]``, the first output holding pixel x, for the pair
  (x - 1, x)). Every other output pixel reads a run of one colour, and is a table lookup of that colour.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

# The kernels below never allocate: compiled without reference counting, calls that pass arrays cost nothing
# (counting references to the array arguments of every pixel-sized call costs more than the pixel work).
_helper = njit(cache=True, _nrt=False)
_LEFT, _RIGHT, _BOTTOM, _TOP = 1, 2, 4, 8
_ONE = 0x4000  # filter_shrink_X_SSE2's fixed-point unit (14 bits)


@_helper
def _i16(v):
    """C's conversion of an int to Sint16 (two's complement wrap)."""
    return ((v + 32768) & 0xFFFF) - 32768


@_helper
def _i32(v):
    """A C int after an operation that may overflow (two's complement wrap)."""
    return ((v + 2147483648) & 0xFFFFFFFF) - 2147483648


@_helper
def _lo(a):
    """``a.min()`` (which allocates)."""
    m = a[0]
    for v in a[1:]:
        m = min(m, v)
    return m


@_helper
def _hi(a):
    """``a.max()``."""
    m = a[0]
    for v in a[1:]:
        m = max(m, v)
    return m


@_helper
def _edge(dirty, row, x, first):
    """Pixels x - 1 and x of a row may now differ: flag the one output pixel whose source range holds both."""
    if 0 < x < first.shape[0]:
        dirty[row, first[x]] = 1


@_helper
def _put(canvas, dirty, x, y, color, r0, r1, first, skip):
    """``_putPixelAlpha`` with alpha 255: clipped, stored. ``canvas`` and ``dirty`` hold rows r0..r1-1; pixels
    inside the row's span ``skip[y - r0]`` (the polygon's own fill, drawn next) are left alone."""
    if 0 <= x < canvas.shape[1] and r0 <= y < r1 and not (skip[y - r0, 0] <= x <= skip[y - r0, 1]):
        canvas[y - r0, x] = color
        _edge(dirty, y - r0, x, first)
        _edge(dirty, y - r0, x + 1, first)


@_helper
def _blend(canvas, dirty, x, y, color, weight, r0, r1, first, skip):
    """``pixelColorWeightNolock`` of an opaque colour: alpha ``255 * weight >> 8`` (never 255), then
    ``_putPixelAlpha``'s 32-bpp blend, which per 8-bit channel comes to ``d + ((c - d) * alpha >> 8)``."""
    if 0 <= x < canvas.shape[1] and r0 <= y < r1 and not (skip[y - r0, 0] <= x <= skip[y - r0, 1]):
        a = (255 * weight) >> 8
        d = np.int64(canvas[y - r0, x])
        r = (d >> 16) & 255
        g = (d >> 8) & 255
        b = d & 255
        r += ((((color >> 16) & 255) - r) * a) >> 8
        g += ((((color >> 8) & 255) - g) * a) >> 8
        b += (((color & 255) - b) * a) >> 8
        canvas[y - r0, x] = (r << 16) | (g << 8) | b
        _edge(dirty, y - r0, x, first)
        _edge(dirty, y - r0, x + 1, first)


@_helper
def _fill(canvas, dirty, x1, x2, y, color, r0, first):
    canvas[y - r0, x1:x2 + 1] = color
    _edge(dirty, y - r0, x1, first)
    _edge(dirty, y - r0, x2 + 1, first)


@_helper
def _hline(canvas, dirty, x1, x2, y, color, r0, r1, first):
    """``hlineColor`` of an opaque colour: Sint16 arguments, ends swapped if reversed, clipped, filled."""
    x1 = _i16(x1)
    x2 = _i16(x2)
    y = _i16(y)
    if x1 > x2:
        x1, x2 = x2, x1
    right = canvas.shape[1] - 1
    if x2 < 0 or x1 > right or y < r0 or y >= r1:
        return
    _fill(canvas, dirty, max(x1, 0), min(x2, right), y, color, r0, first)


@_helper
def _vline(canvas, dirty, x, y1, y2, color, r0, r1, first):
    """``vlineColor`` of an opaque colour: Sint16 arguments, ends swapped if reversed, clipped, filled."""
    x = _i16(x)
    y1 = _i16(y1)
    y2 = _i16(y2)
    if y1 > y2:
        y1, y2 = y2, y1
    if x < 0 or x >= canvas.shape[1]:
        return
    for y in range(max(y1, r0), min(y2, r1 - 1) + 1):
        canvas[y - r0, x] = color
        _edge(dirty, y - r0, x, first)
        _edge(dirty, y - r0, x + 1, first)


@_helper
def _code(x, y, right, bottom):
    code = 0
    if x < 0:
        code |= _LEFT
    elif x > right:
        code |= _RIGHT
    if y < 0:
        code |= _TOP
    elif y > bottom:
        code |= _BOTTOM
    return code


@_helper
def _f2i16(f):
    """C's ``(Sint16)`` of a float: truncated to an int (x86 gives INT_MIN when out of range), then wrapped."""
    if not (-2147483648.0 <= f < 2147483648.0):
        return 0
    return _i16(np.int64(f))


@_helper
def _clip_line(x1, y1, x2, y2, right, bottom):
    """``_clipLine`` (Cohen-Sutherland on the whole surface): float32 slope, Sint16 steps; may swap the ends."""
    while True:
        c1 = _code(x1, y1, right, bottom)
        c2 = _code(x2, y2, right, bottom)
        if (c1 | c2) == 0:
            return True, x1, y1, x2, y2
        if (c1 & c2) != 0:
            return False, x1, y1, x2, y2
        if c1 == 0:
            x1, x2 = x2, x1
            y1, y2 = y2, y1
            c1 = c2
        if x2 != x1:
            m = np.float32(y2 - y1) / np.float32(x2 - x1)
        else:
            m = np.float32(1.0)
        if c1 & _LEFT:
            y1 = _i16(y1 + _f2i16(np.float32(0 - x1) * m))
            x1 = 0
        elif c1 & _RIGHT:
            y1 = _i16(y1 + _f2i16(np.float32(right - x1) * m))
            x1 = right
        elif c1 & _BOTTOM:
            if x2 != x1:
                x1 = _i16(x1 + _f2i16(np.float32(bottom - y1) / m))
            y1 = bottom
        elif c1 & _TOP:
            if x2 != x1:
                x1 = _i16(x1 + _f2i16(np.float32(0 - y1) / m))
            y1 = 0


# The anti-aliased edges of a frame, set up once (``_line_setup``) and drawn band by band (``_line_rows``).
_NONE, _VLINE, _PIXEL, _HLINE, _WU = 0, 1, 2, 3, 4


@_helper
def _line_setup(x1, y1, x2, y2, right, bottom, line):
    """``_aalineColor(..., draw_endpoint=0)``'s decisions for one edge, stored in ``line``: kind, then its
    arguments, then the first and last row it can touch (``line[10]``, ``line[11]``)."""
    line[0] = _NONE
    draw, x1, y1, x2, y2 = _clip_line(x1, y1, x2, y2, right, bottom)
    if not draw:
        return
    xx0, yy0, xx1, yy1 = x1, y1, x2, y2
    if yy0 > yy1:
        xx0, xx1 = xx1, xx0
        yy0, yy1 = yy1, yy0
    dx = xx1 - xx0
    dy = yy1 - yy0
    line[10], line[11] = yy0, yy1 + 1
    if dx == 0:
        if dy > 0:
            line[0], line[1], line[2], line[3] = _VLINE, x1, yy0, yy0 + dy
        else:
            line[0], line[1], line[2] = _PIXEL, x1, y1
        return
    if dy == 0:
        line[0], line[1], line[2], line[3] = _HLINE, xx0, xx0 + dx, y1
        return
    xdir = 1
    if dx < 0:
        xdir = -1
        dx = -dx
    if dy > dx:  # y-major: 16-bit fraction of a pixel x advances per row, in the top half of a 32-bit int
        erradj = (((dx << 16) // dy) << 16) & 0xFFFFFFFF
    else:
        erradj = (((dy << 16) // dx) << 16) & 0xFFFFFFFF
    line[0], line[1], line[2], line[3], line[4] = _WU, x1, y1, xx0, yy0
    line[5], line[6], line[7], line[8], line[9] = dx, dy, xdir, erradj, 1 if dy > dx else 0


@_helper
def _line_rows(canvas, dirty, line, color, r0, r1, first, skip):
    """The pixels of a set-up edge that fall in rows r0..r1-1, in the order ``_aalineColor`` draws them.

    The Wu loop adds ``erradj`` to a 32-bit accumulator at every step k = 1, 2, ... of the major axis and
    advances the minor coordinate when it wraps: after k steps the accumulator is ``k * erradj mod 2**32`` and
    it has wrapped ``k * erradj >> 32`` times (or k times when ``erradj`` is 0, which the C test ``erracc <=
    previous`` treats as a wrap at every step). So the steps whose pixels can reach the band are found without
    walking the others."""
    kind = line[0]
    if kind == _NONE or line[11] < r0 or line[10] >= r1:
        return
    if kind == _VLINE:
        _vline(canvas, dirty, line[1], line[2], line[3], color, r0, r1, first)
        return
    if kind == _PIXEL:
        _put(canvas, dirty, line[1], line[2], color, r0, r1, first, skip)
        return
    if kind == _HLINE:
        _hline(canvas, dirty, line[1], line[2], line[3], color, r0, r1, first)
        return
    _put(canvas, dirty, line[1], line[2], color, r0, r1, first, skip)
    xx0, yy0, dx, dy, xdir, erradj = line[3], line[4], line[5], line[6], line[7], line[8]
    if line[9]:  # y-major: step k is row yy0 + k, pixels x and x + xdir
        k_lo = max(1, r0 - yy0)
        k_hi = min(dy - 1, r1 - 1 - yy0)
        if k_lo > k_hi:
            return
        acc = k_lo * erradj
        x = xx0 + xdir * (acc >> 32)
        acc &= 0xFFFFFFFF
        for k in range(k_lo, k_hi + 1):
            wgt = acc >> 24
            y = yy0 + k
            _blend(canvas, dirty, x, y, color, 255 - wgt, r0, r1, first, skip)
            _blend(canvas, dirty, x + xdir, y, color, wgt, r0, r1, first, skip)
            acc += erradj
            if acc > 0xFFFFFFFF:
                acc -= 0x100000000
                x += xdir
        return
    # x-major: step k is column xx0 + xdir * k, pixels in rows y and y + 1 where y = yy0 + wraps(k)
    lo, hi = r0 - 1 - yy0, r1 - 1 - yy0  # the wanted range of wraps(k)
    if erradj == 0:
        k_lo, k_hi = max(1, lo), min(dx - 1, hi)
    else:
        k_lo = 1 if lo <= 0 else max(1, -((-lo << 32) // erradj))
        k_hi = -1 if hi < 0 else min(dx - 1, (((hi + 1) << 32) - 1) // erradj)
    if k_lo > k_hi:
        return
    if erradj == 0:
        for k in range(k_lo, k_hi + 1):
            x = xx0 + xdir * k
            _blend(canvas, dirty, x, yy0 + k, color, 255, r0, r1, first, skip)
            _blend(canvas, dirty, x, yy0 + k + 1, color, 0, r0, r1, first, skip)
        return
    acc = k_lo * erradj
    y = yy0 + (acc >> 32)
    acc &= 0xFFFFFFFF
    for k in range(k_lo, k_hi + 1):
        wgt = acc >> 24
        x = xx0 + xdir * k
        _blend(canvas, dirty, x, y, color, 255 - wgt, r0, r1, first, skip)
        _blend(canvas, dirty, x, y + 1, color, wgt, r0, r1, first, skip)
        acc += erradj
        if acc > 0xFFFFFFFF:
            acc -= 0x100000000
            y += 1


@_helper
def _span_end(v):
    """``(v >> 16) + ((v & 32768) >> 15)`` on a C int."""
    v = _i32(v)
    return (v >> 16) + ((v & 32768) >> 15)


@_helper
def _sort(ints, count):
    """The C code's qsort of the crossings: any correct sort of ints gives the same order."""
    for i in range(1, count):
        v = ints[i]
        k = i - 1
        while k >= 0 and ints[k] > v:
            ints[k + 1] = ints[k]
            k -= 1
        ints[k + 1] = v


@_helper
def _side(vx, vy, i):
    """Side i of a polygon, from vertex i − 1 (vertex n − 1 for i = 0) to vertex i, top end first: (y1, y2, x1,
    x2) with y1 ≤ y2; y1 == y2 for a horizontal side, which no row crosses."""
    i1 = vx.shape[0] - 1 if i == 0 else i - 1
    if vy[i1] <= vy[i]:
        return vy[i1], vy[i], vx[i1], vx[i]
    return vy[i], vy[i1], vx[i], vx[i1]


@_helper
def _fill_setup(vx, vy, y_first, edges):
    """The crossing edges of a polygon for ``filledPolygonColorMT``, in the C loop's order, top end first, with
    their 16.16 quotient stepped to row ``y_first``. Returns how many (horizontal edges never cross a row)."""
    m = 0
    for i in range(vx.shape[0]):
        y1, y2, x1, x2 = _side(vx, vy, i)
        if y1 == y2:
            continue
        dy = y2 - y1
        num = 65536 * (max(y_first, y1) - y1)
        edges[m, 0], edges[m, 1], edges[m, 2], edges[m, 3] = y1, y2, x2 - x1, _i32(65536 * x1)
        edges[m, 4], edges[m, 5] = num // dy, num % dy
        edges[m, 6], edges[m, 7] = 65536 // dy, 65536 % dy
        m += 1
    return m


@_helper
def _fill_spans(edges, m, maxy, y_from, y_to, r0, w, ints, pairs, npairs, skip):
    """``filledPolygonColorMT``'s spans of rows y_from..y_to (consecutive calls continue where the last stopped),
    as ``hlineColor`` draws them (Sint16 ends, swapped if reversed, clipped to the ``w`` columns; empty if
    ``lo > hi``), kept in ``pairs``/``npairs`` (band rows), the first one also in ``skip``.

    Row y's crossing of an edge from (x1, y1) down to (x2, y2) is ``(65536 * (y - y1) / (y2 - y1)) * (x2 - x1) +
    65536 * x1`` in C ints. The quotient is stepped from row to row with its remainder (exact while
    ``65536 * (y - y1)`` fits an int, i.e. for edges under 32768 rows); taller edges use the formula itself."""
    for y in range(y_from, y_to + 1):
        count = 0
        for e in range(m):
            y1, y2 = edges[e, 0], edges[e, 1]
            if y1 <= y < y2:
                dy = y2 - y1
                if dy < 32768:
                    q = edges[e, 4]
                    r = edges[e, 5] + edges[e, 7]
                    edges[e, 4] = q + edges[e, 6] + (1 if r >= dy else 0)
                    edges[e, 5] = r - dy if r >= dy else r
                else:
                    q = _i32(65536 * (y - y1)) // dy
                ints[count] = _i32(_i32(q * edges[e, 2]) + edges[e, 3])
                count += 1
            elif y == maxy and y1 < y <= y2:
                q = _i32(65536 * (y - y1)) // (y2 - y1)
                ints[count] = _i32(_i32(q * edges[e, 2]) + edges[e, 3])
                count += 1
        _sort(ints, count)
        row = y - r0
        k = 0
        for i in range(0, count - 1, 2):
            x1, x2 = _i16(_span_end(ints[i] + 1)), _i16(_span_end(ints[i + 1] - 1))
            if x1 > x2:
                x1, x2 = x2, x1
            pairs[row, 2 * k], pairs[row, 2 * k + 1] = max(x1, 0), min(x2, w - 1)
            k += 1
        npairs[row] = k
        if k:
            skip[row, 0], skip[row, 1] = pairs[row, 0], pairs[row, 1]


@_helper
def _pg_hline(canvas, dirty, x1, y, x2, color, r0, r1, first):
    """pygame ``draw.c``'s ``drawhorzlineclipbounding``: ends swapped if reversed, clipped, filled."""
    if y < r0 or y >= r1:
        return
    if x2 < x1:
        x1, x2 = x2, x1
    x1 = max(x1, 0)
    x2 = min(x2, canvas.shape[1] - 1)
    if x2 < 0 or x1 >= canvas.shape[1]:
        return
    _fill(canvas, dirty, x1, x2, y, color, r0, first)


@_helper
def _pg_polygon(canvas, dirty, vx, vy, color, r0, r1, first, ints):
    """pygame ``draw.polygon`` (``draw_fillpoly``, polygons of 4 or more points) on rows r0..r1-1: float32 edge
    crossings, floored and ceiled alternately, sorted and paired; then the horizontal edges strictly between the
    top and the bottom."""
    n = vx.shape[0]
    miny = _lo(vy)
    maxy = _hi(vy)
    if maxy < r0 or miny >= r1:
        return
    if miny == maxy:
        _pg_hline(canvas, dirty, _lo(vx), miny, _hi(vx), color, r0, r1, first)
        return
    for y in range(max(miny, r0), min(maxy, r1 - 1) + 1):
        count = 0
        for i in range(n):
            y1, y2, x1, x2 = _side(vx, vy, i)
            if y1 == y2:
                continue
            if (y1 <= y < y2) or (y == maxy and y2 == maxy):
                cross = np.float32((y - y1) * (x2 - x1)) / np.float32(y2 - y1)
                if count % 2 == 0:
                    ints[count] = np.int64(math.floor(cross)) + x1
                else:
                    ints[count] = np.int64(math.ceil(cross)) + x1
                count += 1
        _sort(ints, count)
        for i in range(0, count - 1, 2):
            _pg_hline(canvas, dirty, ints[i], y, ints[i + 1], color, r0, r1, first)
    for i in range(n):
        y1, y2, x1, x2 = _side(vx, vy, i)
        if y1 == y2 and miny < y1 < maxy:
            _pg_hline(canvas, dirty, x1, y1, x2, color, r0, r1, first)


@_helper
def _rotated(x, y, quarter, cos, sin):
    """``Vector2.rotate_rad`` given ``quarter`` (0-3: an exact quarter turn; 4: by ``cos``, ``sin``)."""
    if quarter == 0:
        return x, y
    if quarter == 1:
        return -y, x
    if quarter == 2:
        return -x, -y
    if quarter == 3:
        return y, -x
    return cos * x - sin * y, sin * x + cos * y


@_helper
def transform(view, xs, ys, w, h, bar, ix, iy, keep):
    """Screen vertices and culling of every polygon; polygon 0 is the playfield (never culled).

    ``view`` is (quarter, cos, sin, zoom, tx, ty, margin): each vertex is rotated as ``Vector2.rotate_rad`` does
    (``quarter`` 0-3: an exact quarter turn; 4: by ``cos``, ``sin``), zoomed and translated by (tx, ty) in
    float64 in the parent's order, then truncated to an int and wrapped to Sint16 as gfxdraw receives it.
    ``keep[p]`` is set when the parent would draw polygon p (a vertex within ``margin`` of the window) and its
    integer vertices can touch a canvas pixel at or below row ``bar`` (gfxdraw stays within a pixel of the
    vertices' bounding box)."""
    quarter, cos, sin, zoom, tx, ty, margin = view[0], view[1], view[2], view[3], view[4], view[5], view[6]
    for p in range(xs.shape[0]):
        inside = p == 0
        for k in range(xs.shape[1]):
            rx, ry = _rotated(xs[p, k], ys[p, k], quarter, cos, sin)
            px = rx * zoom + tx
            py = ry * zoom + ty
            if -margin <= px <= w + margin and -margin <= py <= h + margin:
                inside = True
            ix[p, k] = _i16(np.int64(px))
            iy[p, k] = _i16(np.int64(py))
        keep[p] = p == 0 or (
            inside
            and not (_hi(ix[p]) < -2 or _lo(ix[p]) > w + 1 or _hi(iy[p]) < bar - 2 or _lo(iy[p]) > h + 1)
        )


@_helper
def car_vertices(view, bodies, verts, counts, owner, drawn, cx, cy):
    """Canvas vertices of the car's polygons, as ``Car.draw`` computes them, into ``cx``, ``cy``.

    Polygon k (drawn if ``drawn[k]``) has ``counts[k]`` local vertices ``verts[k]`` (float32) on body
    ``owner[k]``, whose Box2D transform is ``bodies[b] = (p.x, p.y, q.s, q.c)`` (float32). Each vertex goes
    through ``b2Mul`` in float32 (``(c x - s y) + p.x``, ``(s x + c y) + p.y``, as Box2D computes it, without
    fused multiply-adds), then the parent's float64 rotation, zoom and translation (``view``, as in
    ``transform``), then pygame's ``(int)`` truncation."""
    quarter, cos, sin, zoom, tx, ty = view[0], view[1], view[2], view[3], view[4], view[5]
    for k in range(verts.shape[0]):
        if not drawn[k]:
            continue
        b = owner[k]
        px, py, s, c = bodies[b, 0], bodies[b, 1], bodies[b, 2], bodies[b, 3]
        for v in range(counts[k]):
            lx, ly = verts[k, v, 0], verts[k, v, 1]
            rx, ry = _rotated(np.float64((c * lx - s * ly) + px), np.float64((s * lx + c * ly) + py), quarter, cos, sin)
            cx[k, v] = np.int64(rx * zoom + tx)
            cy[k, v] = np.int64(ry * zoom + ty)


@_helper
def _covers(vx, vy, w, h):
    """Whether filled_polygon of this integer quadrilateral paints every pixel of the window.

    True only with room to spare: the quad is convex and contains the window grown by 3 px on every side, and its
    coordinates are small enough that the 16.16 fixed-point scanline arithmetic cannot overflow. Then every row
    0..h-1 lies strictly between the quad's lowest and highest vertex and has exactly two edge crossings, each
    computed to within 0.75 px, so the row's span reaches past both sides of the window."""
    if vx.shape[0] != 4:
        return False
    for i in range(4):
        if abs(vx[i]) > 16000 or abs(vy[i]) > 16000:
            return False
    sign = 0
    for i in range(4):
        x0, y0, x1, y1, x2, y2 = vx[i], vy[i], vx[(i + 1) % 4], vy[(i + 1) % 4], vx[(i + 2) % 4], vy[(i + 2) % 4]
        cross = (x1 - x0) * (y2 - y1) - (y1 - y0) * (x2 - x1)
        s = 1 if cross > 0 else -1 if cross < 0 else 0
        if s == 0 or (sign != 0 and s != sign):
            return False
        sign = s
    for cx, cy in ((-3, -3), (w + 3, -3), (w + 3, h + 3), (-3, h + 3)):
        for i in range(4):
            x0, y0, x1, y1 = vx[i], vy[i], vx[(i + 1) % 4], vy[(i + 1) % 4]
            if sign * ((x1 - x0) * (cy - y0) - (y1 - y0) * (cx - x0)) <= 0:
                return False
    return True


@njit(cache=True)
def render(canvas, dirty, bar, h, ix, iy, keep, colors, cx, cy, ccounts, ccolors, cdrawn, shrink, out, sched, first,
           xrecip, table):
    """Draw the scene (and the car, if given) on canvas rows ``bar``..h-1 and, if ``shrink``, x-shrink them.

    The playfield (polygon 0, on a canvas that starts black) then the other polygons ``keep`` selects are drawn in
    their colours ``colors[p]`` (``0x00RRGGBB``) as gfxdraw's aapolygon then filled_polygon, then the car's
    polygons ``cdrawn`` selects (``cx``, ``cy``, ``ccounts``, ``ccolors``) as ``draw.polygon``, in bands of
    ``canvas.shape[0]`` rows; ``dirty`` holds a band's flags. ``sched``, ``first``, ``xrecip`` and ``table``
    come from ``shrink_schedule``."""
    bx, xc, xfrac = sched[0], sched[1], sched[2]
    order = np.flatnonzero(keep)
    band = canvas.shape[0]
    w = canvas.shape[1]
    npoly = order.shape[0]
    nv = ix.shape[1]
    ints = np.empty(max(nv, cx.shape[1]), np.int64)
    lines = np.empty((npoly, nv, 12), np.int64)
    edges = np.empty((npoly, nv, 8), np.int64)
    nedges = np.empty(npoly, np.int64)
    miny = np.empty(npoly, np.int64)
    maxy = np.empty(npoly, np.int64)
    top = np.empty(npoly, np.int64)
    bottom = np.empty(npoly, np.int64)
    pairs = np.empty((band, nv), np.int64)
    npairs = np.empty(band, np.int64)
    skip = np.empty((band, 2), np.int64)
    for i in range(npoly):
        p = order[i]
        vx, vy = ix[p], iy[p]
        for k in range(nv):
            _line_setup(vx[k], vy[k], vx[(k + 1) % nv], vy[(k + 1) % nv], w - 1, h - 1, lines[i, k])
        miny[i], maxy[i] = _lo(vy), _hi(vy)
        nedges[i] = _fill_setup(vx, vy, max(miny[i], bar), edges[i])
        top[i], bottom[i] = miny[i], maxy[i]  # the rows its fill and edges can touch
        for k in range(nv):
            if lines[i, k, 0] != _NONE:
                top[i], bottom[i] = min(top[i], lines[i, k, 10]), max(bottom[i], lines[i, k, 11])
    black = not _covers(ix[0], iy[0], w, h)
    ncar = ccounts.shape[0]
    car_lo = np.full(ncar, h, np.int64)  # rows of the drawn car polygons (none for the others)
    car_hi = np.full(ncar, -1, np.int64)
    for k in range(ncar):
        if cdrawn[k]:
            car_lo[k], car_hi[k] = _lo(cy[k, : ccounts[k]]), _hi(cy[k, : ccounts[k]])
    for r0 in range(bar, h, band):
        r1 = min(r0 + band, h)
        dirty[: r1 - r0] = 0
        if black:
            canvas[: r1 - r0] = 0
        for i in range(npoly):
            if bottom[i] < r0 or top[i] >= r1:
                continue
            for y in range(max(top[i], r0), min(bottom[i], r1 - 1) + 1):
                skip[y - r0, 0], skip[y - r0, 1] = 1, 0
            y_from, y_to = max(miny[i], r0), min(maxy[i], r1 - 1)
            if y_from <= y_to:
                _fill_spans(edges[i], nedges[i], maxy[i], y_from, y_to, r0, w, ints, pairs, npairs, skip)
            for k in range(nv):
                _line_rows(canvas, dirty, lines[i, k], colors[order[i]], r0, r1, first, skip)
            for y in range(y_from, y_to + 1):
                for k in range(npairs[y - r0]):
                    x1, x2 = pairs[y - r0, 2 * k], pairs[y - r0, 2 * k + 1]
                    if x1 <= x2:
                        _fill(canvas, dirty, x1, x2, y, colors[order[i]], r0, first)
        for k in range(ncar):
            if car_lo[k] < r1 and car_hi[k] >= r0:  # (never for an undrawn one)
                _pg_polygon(canvas, dirty, cx[k, : ccounts[k]], cy[k, : ccounts[k]], ccolors[k], r0, r1, first, ints)
        if shrink:
            shrink_rows(canvas, dirty, r0, r1, h, True, out, bx, xc, xfrac, xrecip, table)


@_helper
def _bars(values, w, h, xs, ys, colors):
    """The bars ``CarRacing._render_indicators`` draws from ``values`` (speed x and y, the four wheels' omega, the
    front wheel's joint angle, the hull's angular velocity) on a ``w``×``h`` window: the integer vertices
    ``draw.polygon`` gets from its float points (``(int)`` truncation) and the pixels. Returns how many (a bar
    whose value is within 1e-4 of zero is not drawn)."""
    s, u = w / 40.0, h / 40.0
    true_speed = math.sqrt(values[0] * values[0] + values[1] * values[1])
    n = 0
    for k in range(7):
        if k == 0:
            value, place, val, color = true_speed, 5, 0.02 * true_speed, 0xFFFFFF
        elif k < 5:
            value, place, val = values[1 + k], 6 + k, 0.01 * values[1 + k]
            color = 0x0000FF if k < 3 else 0x3300FF
        elif k == 5:
            value, place, val, color = values[6], 20, -10.0 * values[6], 0x00FF00
        else:
            value, place, val, color = values[7], 30, -0.8 * values[7], 0xFF0000
        if abs(value) <= 1e-4:
            continue
        if k < 5:  # vertical_ind(place, val)
            top = h - (u + u * val)
            x0, x1, y0, y1 = place * s, (place + 1) * s, top, h - u
            xs[n, 0], xs[n, 1], xs[n, 2], xs[n, 3] = np.int64(x0), np.int64(x1), np.int64(x1), np.int64((place + 0) * s)
            ys[n, 0], ys[n, 1], ys[n, 2], ys[n, 3] = np.int64(y0), np.int64(y0), np.int64(y1), np.int64(y1)
        else:  # horiz_ind(place, val)
            x0, x1, y0, y1 = (place + 0) * s, (place + val) * s, h - 4 * u, h - 2 * u
            xs[n, 0], xs[n, 1], xs[n, 2], xs[n, 3] = np.int64(x0), np.int64(x1), np.int64(x1), np.int64(x0)
            ys[n, 0], ys[n, 1], ys[n, 2], ys[n, 3] = np.int64(y0), np.int64(y0), np.int64(y1), np.int64(y1)
        colors[n] = color
        n += 1
    return n


@njit(cache=True)
def dashboard(canvas, dirty, h, top, values, text, text_x, text_y, out, sched, first, xrecip, table):
    """The dashboard rows ``top``..h-1 of the window as the parent draws them (a black rectangle over those
    rows, the bars of ``values`` (see ``_bars``) with ``draw.polygon``, then the reward text blitted at
    ``text_x``, ``text_y``), x-shrunk into the same rows of ``out``, in bands of ``canvas.shape[0]`` rows.

    A row is black but for the bars and text crossing it: the outputs whose source range lies in the black part
    are 0 (a run of black), and only the others are drawn and computed."""
    bx, xc, xfrac = sched[0], sched[1], sched[2]
    band, w = canvas.shape[0], canvas.shape[1]
    n = bx.shape[0]
    bars_x = np.empty((7, 4), np.int64)
    bars_y = np.empty((7, 4), np.int64)
    bar_colors = np.empty(7, np.int64)
    nbars = _bars(values, w, h, bars_x, bars_y, bar_colors)
    ints = np.empty(4, np.int64)
    th, tw = text.shape[0], text.shape[1]
    c0, c1 = max(text_x, 0), min(text_x + tw, w)
    for r0 in range(top, h, band):
        r1 = min(r0 + band, h)
        dirty[: r1 - r0] = 0
        lo = np.full(r1 - r0, w, np.int64)  # per row, the columns the bars and text may paint
        hi = np.full(r1 - r0, -1, np.int64)
        for k in range(nbars):
            for y in range(max(_lo(bars_y[k]), r0), min(_hi(bars_y[k]), r1 - 1) + 1):
                lo[y - r0] = min(lo[y - r0], _lo(bars_x[k]))
                hi[y - r0] = max(hi[y - r0], _hi(bars_x[k]))
        for y in range(max(text_y, r0), min(text_y + th, r1)):
            lo[y - r0] = min(lo[y - r0], c0)
            hi[y - r0] = max(hi[y - r0], c1 - 1)
        for y in range(r0, r1):  # outputs j0..j1-1 hold all of the row's painted columns lo..hi
            o = out[y]
            o[:n] = 0
            if lo[y - r0] <= hi[y - r0]:
                j0 = first[max(lo[y - r0], 0)]
                j1 = first[min(hi[y - r0] + 1, w - 1)] + 1
                lo[y - r0], hi[y - r0] = j0, j1
                canvas[y - r0, bx[j0 - 1] if j0 else 0 : bx[j1 - 1] + 1] = 0
        for k in range(nbars):
            _pg_polygon(canvas, dirty, bars_x[k], bars_y[k], bar_colors[k], r0, r1, first, ints)
        for y in range(max(text_y, r0), min(text_y + th, r1)):
            if c0 < c1:
                canvas[y - r0, c0:c1] = text[y - text_y, c0 - text_x : c1 - text_x]
                for x in range(c0, c1 + 1):
                    _edge(dirty, y - r0, x, first)
        for y in range(r0, r1):
            if lo[y - r0] < hi[y - r0]:
                _shrink_row(canvas[y - r0], dirty[y - r0], out[y], lo[y - r0], hi[y - r0], bx, xc, xfrac, xrecip, table)


@njit(cache=True)
def frame(view, xs, ys, colors, ix, iy, keep, car, cx, cy, values, text, layout, band, dirty, out, sched, first, table):
    """One ``state_pixels`` frame up to the y pass: ``transform``, ``car_vertices`` then ``render`` (band by band,
    with the x pass) and ``dashboard``, into ``out``. ``car`` is (bodies, verts, counts, owner, colors, drawn),
    ``layout`` (w, h, bar, text_x, text_y, xrecip)."""
    w, h, bar, text_x, text_y, xrecip = layout[0], layout[1], layout[2], layout[3], layout[4], layout[5]
    bodies, verts, counts, owner, car_colors, drawn = car
    transform(view, xs, ys, w, h, bar, ix, iy, keep)
    car_vertices(view, bodies, verts, counts, owner, drawn, cx, cy)
    render(band, dirty, bar, h, ix, iy, keep, colors, cx, cy, counts, car_colors, drawn, True, out, sched, first, xrecip, table)
    dashboard(band, dirty, h, h - bar, values, text, text_x, text_y, out, sched, first, xrecip, table)


@_helper
def _shrink_row(row, flags, o, j0, j1, bx, xc, xfrac, xrecip, table):
    """``filter_shrink_X_SSE2``'s outputs j0..j1-1 of one row (see ``shrink_rows``)."""
    for j in range(j0, j1):
        b = bx[j]
        if not flags[j]:
            p = row[b]
            t = table[j]
            o[j] = (np.uint32(t[(p >> 16) & 255]) << 16) | (np.uint32(t[(p >> 8) & 255]) << 8) | t[p & 255]
            continue
        # channel sums side by side in one int (blue bits 0-15, green 16-31, red 32-47): none exceeds 65535
        if j == 0:
            start, acc = 0, 0
        else:
            p = np.int64(row[bx[j - 1]])
            f = xfrac[j - 1]
            acc = (((4 * ((p >> 16) & 255) * f) >> 16) << 32) | (((4 * ((p >> 8) & 255) * f) >> 16) << 16) | (
                (4 * (p & 255) * f) >> 16
            )
            start = bx[j - 1] + 1
        for x in range(start, b):
            p = np.int64(row[x])
            acc += ((p & 0xFF0000) << 16) | ((p & 0xFF00) << 8) | (p & 0xFF)
        p = np.int64(row[b])
        c = xc[j]
        r = min((((acc >> 32) + ((4 * ((p >> 16) & 255) * c) >> 16)) * xrecip) >> 16, 255)
        g = min(((((acc >> 16) & 0xFFFF) + ((4 * ((p >> 8) & 255) * c) >> 16)) * xrecip) >> 16, 255)
        bb = min((((acc & 0xFFFF) + ((4 * (p & 255) * c) >> 16)) * xrecip) >> 16, 255)
        o[j] = (r << 16) | (g << 8) | bb


@_helper
def shrink_rows(canvas, dirty, r0, r1, h, flip, out, bx, xc, xfrac, xrecip, table):
    """``filter_shrink_X_SSE2`` of canvas rows r0..r1-1 (held in ``canvas`` from its row 0) into ``out``, flipped
    if ``flip`` (canvas row y → out row h-1-y). Output pixels ``dirty`` flags are computed from their source
    pixels; every other one reads a run of the colour at its boundary pixel: ``table[j, value]`` per channel."""
    for y in range(r0, r1):
        o = out[h - 1 - y] if flip else out[y]
        _shrink_row(canvas[y - r0], dirty[y - r0], o, 0, bx.shape[0], bx, xc, xfrac, xrecip, table)


@njit(cache=True)
def rgb(pixels, w):
    """The first ``w`` columns of ``0x00RRGGBB`` pixels as a (height, w, 3) uint8 RGB image."""
    image = np.empty((pixels.shape[0], w, 3), np.uint8)
    for y in range(pixels.shape[0]):
        for x in range(w):
            p = pixels[y, x]
            image[y, x, 0] = (p >> 16) & 255
            image[y, x, 1] = (p >> 8) & 255
            image[y, x, 2] = p & 255
    return image


def shrink_schedule(src: int, dst: int):
    """What ``filter_shrink_X_SSE2`` does to a row of ``src`` pixels shrunk to ``dst``, independent of the pixels.

    Returns ``sched`` (rows: the boundary pixel ``bx`` of each output pixel, its weight ``xcounter``, the remainder
    ``xfrac`` it carries into the next output), ``first[x]`` (the first output whose source range
    ``[bx[j-1], bx[j]]`` holds pixel x), ``xrecip`` and ``table[j, v]`` (output j of a run of channel value v)."""
    xspace = _ONE * src // dst
    xrecip = (0x40000000 // xspace) & 0xFFFF
    bx, xc = [], []
    counter = xspace
    for x in range(src):
        if counter > _ONE:
            counter -= _ONE
        else:
            bx.append(x)
            xc.append(counter)
            counter = xspace - (_ONE - counter)
    if len(bx) != dst or bx[-1] != src - 1:
        raise ValueError(f"smoothscale {src} -> {dst}: {len(bx)} outputs, the last at pixel {bx[-1]}")
    bx = np.array(bx, np.int64)
    xc = np.array(xc, np.int64)
    xfrac = _ONE - xc
    first = np.empty(src, np.int64)
    for j in range(dst - 1, -1, -1):  # output j holds pixels bx[j-1]..bx[j]: the pair (bx[j-1], bx[j-1]+1) too
        first[(bx[j - 1] if j else 0) : bx[j] + 1] = j
    v = np.arange(256, dtype=np.int64)
    table = np.empty((dst, 256), np.uint8)
    for j in range(dst):
        carry = (4 * v * xfrac[j - 1]) >> 16 if j else 0
        interior = bx[j] - (bx[j - 1] + 1 if j else 0)
        table[j] = np.minimum(((carry + interior * v + ((4 * v * xc[j]) >> 16)) * xrecip) >> 16, 255)
    return np.stack([bx, xc, xfrac]), first, xrecip, table
