"""An RGB raster with the few drawing operations the forecast plot needs, saved as PNG.

Standard library only (zlib for PNG's deflate and CRCs): the trainer image carries no imaging
library. Coordinates are pixels, x to the right and y down, as floats; colours are (r, g, b)
0-255 and ``alpha`` 0-1 blends a colour over what is drawn already.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Sequence

from forecast_trainer.font5x7 import GLYPH_HEIGHT, GLYPH_WIDTH, glyph

Colour = tuple[int, int, int]
Point = tuple[float, float]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Canvas:
    def __init__(self, width: int, height: int, background: Colour = (255, 255, 255)) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def get(self, x: int, y: int) -> Colour:
        p = (y * self.width + x) * 3
        return self.pixels[p], self.pixels[p + 1], self.pixels[p + 2]

    def blend(self, x: int, y: int, colour: Colour, alpha: float = 1.0) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            p = (y * self.width + x) * 3
            if alpha >= 1.0:
                self.pixels[p : p + 3] = bytes(colour)
            else:
                px = self.pixels
                for i in range(3):
                    px[p + i] = round(px[p + i] + (colour[i] - px[p + i]) * alpha)

    def span(self, x0: int, x1: int, y: int, colour: Colour, alpha: float = 1.0) -> None:
        """Pixels x0..x1 (inclusive) of row y."""
        if not 0 <= y < self.height:
            return
        x0, x1 = max(0, x0), min(self.width - 1, x1)
        if x1 < x0:
            return
        if alpha >= 1.0:
            p = (y * self.width + x0) * 3
            self.pixels[p : p + 3 * (x1 - x0 + 1)] = bytes(colour) * (x1 - x0 + 1)
        else:
            for x in range(x0, x1 + 1):
                self.blend(x, y, colour, alpha)

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: Colour, fill: bool = True) -> None:
        left, top, right, bottom = round(x0), round(y0), round(x1), round(y1)
        if fill:
            for y in range(top, bottom + 1):
                self.span(left, right, y, colour)
        else:
            self.span(left, right, top, colour)
            self.span(left, right, bottom, colour)
            for y in range(top, bottom + 1):
                self.blend(left, y, colour)
                self.blend(right, y, colour)

    def disc(self, cx: float, cy: float, radius: float, colour: Colour) -> None:
        for y in range(math.floor(cy - radius), math.ceil(cy + radius) + 1):
            dy = y - cy
            if abs(dy) <= radius:
                half = math.sqrt(radius * radius - dy * dy)
                self.span(math.ceil(cx - half), math.floor(cx + half), y, colour)

    def line(self, points: Sequence[Point], colour: Colour, width: int = 1) -> None:
        """A polyline ``width`` pixels wide (each pixel painted once, so it works with opaque colours)."""
        before = 0 if width <= 1 else (width - 1) // 2
        done: set[tuple[int, int]] = set()
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            steps = max(1, math.ceil(max(abs(x1 - x0), abs(y1 - y0))))
            for i in range(steps + 1):
                x, y = round(x0 + (x1 - x0) * i / steps), round(y0 + (y1 - y0) * i / steps)
                for dx in range(-before, width - before):
                    for dy in range(-before, width - before):
                        if (x + dx, y + dy) not in done:
                            done.add((x + dx, y + dy))
                            self.blend(x + dx, y + dy, colour)

    def polygon(self, points: Sequence[Point], colour: Colour, alpha: float = 1.0) -> None:
        """Fill (even-odd, pixel centres inside), every pixel blended once."""
        if len(points) < 3:
            return
        edges = list(zip(points, [*points[1:], points[0]], strict=True))
        top = max(0, math.floor(min(y for _, y in points)))
        bottom = min(self.height - 1, math.ceil(max(y for _, y in points)))
        for y in range(top, bottom + 1):
            centre = y + 0.5
            xs = sorted(
                xa + (centre - ya) * (xb - xa) / (yb - ya)
                for (xa, ya), (xb, yb) in edges
                if (ya <= centre < yb) or (yb <= centre < ya)
            )
            for left, right in zip(xs[::2], xs[1::2], strict=False):
                self.span(math.ceil(left - 0.5), math.floor(right - 0.5), y, colour, alpha)

    def text(
        self, x: float, y: float, text: str, colour: Colour, scale: int = 1, anchor: str = "lt", vertical: bool = False
    ) -> None:
        """``text`` in the 5x7 font, ``scale`` pixels per font pixel. ``anchor``: horizontal l/m/r then
        vertical t/m/b, as the point (x, y) relative to the text. ``vertical``: read bottom to top."""
        length, tall = text_size(text, scale)
        h = {"l": 0.0, "m": length / 2, "r": float(length)}[anchor[0]]
        v = {"t": 0.0, "m": tall / 2, "b": float(tall)}[anchor[1]]
        ox, oy = round(x - h), round(y - v)  # the text's top left (its bottom left when vertical)
        for i, char in enumerate(text):
            for col, row in glyph(char):
                for sx in range(scale):
                    for sy in range(scale):
                        along, down = (i * (GLYPH_WIDTH + 1) + col) * scale + sx, row * scale + sy
                        if vertical:  # a quarter turn anticlockwise
                            self.blend(round(x - v) + down, round(y + h) - along, colour)
                        else:
                            self.blend(ox + along, oy + down, colour)

    def png(self) -> bytes:
        """The canvas as a PNG file (8-bit RGB, no filtering, deflate)."""
        stride = self.width * 3
        raw = b"".join(b"\x00" + self.pixels[y * stride : (y + 1) * stride] for y in range(self.height))
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def text_size(text: str, scale: int = 1) -> tuple[int, int]:
    """(width, height) in pixels of ``text`` drawn at ``scale``."""
    return max(0, len(text) * (GLYPH_WIDTH + 1) - 1) * scale, GLYPH_HEIGHT * scale


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
