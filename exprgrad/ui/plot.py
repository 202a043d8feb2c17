"""A loss curve as a real picture, with no plotting library: SVG text or a PNG drawn pixel by pixel.

Contract: :func:`loss_curve_svg` and :func:`loss_curve_png` return the file's contents for a list
of losses (a log scale when the losses span more than two decades). Both carry exprgrad's mark so
that a later run may replace them (see :mod:`exprgrad.run.files`).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence

WIDTH, HEIGHT, MARGIN = 640, 400, 50


def _scale(losses: Sequence[float]) -> tuple[list[float], bool, float, float]:
    finite = [x for x in losses if math.isfinite(x)]
    if not finite:
        finite = [0.0]
    log = min(finite) > 0 and max(finite) / min(finite) > 100
    values = [math.log10(x) if log else x for x in finite]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    return values, log, lo, hi


def _points(losses: Sequence[float]) -> tuple[list[tuple[float, float]], bool, float, float]:
    values, log, lo, hi = _scale(losses)
    n = max(1, len(values) - 1)
    pts = []
    for i, v in enumerate(values):
        x = MARGIN + (WIDTH - 2 * MARGIN) * i / n
        y = HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * (v - lo) / (hi - lo)
        pts.append((x, y))
    return pts, log, lo, hi


def loss_curve_svg(losses: Sequence[float], title: str = "loss") -> str:
    pts, log, lo, hi = _points(losses)
    label = (lambda v: f"{10 ** v:.3g}") if log else (lambda v: f"{v:.3g}")
    poly = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    safe_title = "".join(ch for ch in title if ch.isalnum() or ch in " ._-:()")
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!-- exprgrad loss curve -->",
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" '
        f'y2="{HEIGHT - MARGIN}" stroke="black"/>',
        f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="black"/>',
        f'<polyline points="{poly}" fill="none" stroke="#1f77b4" stroke-width="2"/>',
        f'<text x="{WIDTH / 2}" y="30" text-anchor="middle" font-family="sans-serif">'
        f"{safe_title}{' (log scale)' if log else ''}</text>",
        f'<text x="{MARGIN - 5}" y="{MARGIN + 5}" text-anchor="end" font-size="11" '
        f'font-family="sans-serif">{label(hi)}</text>',
        f'<text x="{MARGIN - 5}" y="{HEIGHT - MARGIN}" text-anchor="end" font-size="11" '
        f'font-family="sans-serif">{label(lo)}</text>',
        f'<text x="{WIDTH - MARGIN}" y="{HEIGHT - MARGIN + 20}" text-anchor="end" font-size="11" '
        f'font-family="sans-serif">step {len(losses)}</text>',
        "</svg>",
        "",
    ])


def loss_curve_png(losses: Sequence[float]) -> bytes:
    """An RGB PNG: axes in black, the curve in blue (drawn with thick line segments)."""
    pixels = bytearray(b"\xff" * (WIDTH * HEIGHT * 3))

    def put(x: int, y: int, rgb: tuple[int, int, int]) -> None:
        if 0 <= x < WIDTH and 0 <= y < HEIGHT:
            i = (y * WIDTH + x) * 3
            pixels[i:i + 3] = bytes(rgb)

    def line(x0: float, y0: float, x1: float, y1: float, rgb: tuple[int, int, int],
             thick: int = 1) -> None:
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for s in range(steps + 1):
            t = s / steps
            x, y = round(x0 + (x1 - x0) * t), round(y0 + (y1 - y0) * t)
            for dx in range(-(thick // 2), thick // 2 + 1):
                for dy in range(-(thick // 2), thick // 2 + 1):
                    put(x + dx, y + dy, rgb)

    black = (0, 0, 0)
    line(MARGIN, HEIGHT - MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN, black)
    line(MARGIN, MARGIN, MARGIN, HEIGHT - MARGIN, black)
    for k in range(11):  # ticks
        x = MARGIN + (WIDTH - 2 * MARGIN) * k / 10
        line(x, HEIGHT - MARGIN, x, HEIGHT - MARGIN + 5, black)
        y = MARGIN + (HEIGHT - 2 * MARGIN) * k / 10
        line(MARGIN - 5, y, MARGIN, y, black)
    pts, _, _, _ = _points(losses)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        line(x0, y0, x1, y1, (31, 119, 180), thick=3)
    if len(pts) == 1:
        line(pts[0][0], pts[0][1], pts[0][0], pts[0][1], (31, 119, 180), thick=5)

    raw = b"".join(b"\x00" + bytes(pixels[y * WIDTH * 3:(y + 1) * WIDTH * 3])
                   for y in range(HEIGHT))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"tEXt", b"Software\x00exprgrad loss curve")
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
