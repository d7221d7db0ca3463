"""raster.py: the canvas's drawing operations and its PNG, decoded by an independent reader (Pillow)."""

from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image

from forecast_trainer.font5x7 import GLYPHS, glyph
from forecast_trainer.raster import Canvas, text_size

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def decoded(canvas: Canvas) -> Image.Image:
    image = Image.open(io.BytesIO(canvas.png()))
    image.load()  # verifies every chunk's CRC and the deflate stream
    return image


def test_png_decodes_to_the_canvas_pixels() -> None:
    canvas = Canvas(7, 3)
    canvas.blend(0, 0, RED)
    canvas.blend(6, 2, BLUE)
    canvas.blend(3, 1, (10, 20, 30))
    image = decoded(canvas)
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (7, 3)
    assert image.tobytes() == bytes(canvas.pixels)
    assert image.getpixel((0, 0)) == RED and image.getpixel((6, 2)) == BLUE and image.getpixel((1, 1)) == WHITE


def test_a_corrupted_png_fails_its_crc() -> None:
    data = bytearray(Canvas(4, 4).png())
    data[data.index(b"IDAT") + 6] ^= 0xFF
    with pytest.raises((OSError, SyntaxError, zlib.error)):
        Image.open(io.BytesIO(bytes(data))).load()


def test_blending_and_clipping() -> None:
    canvas = Canvas(4, 4)
    canvas.blend(1, 1, BLUE, 0.5)
    assert canvas.get(1, 1) == (128, 128, 255)
    canvas.blend(-1, 2, RED)
    canvas.blend(4, 0, RED)
    canvas.span(-5, 10, 3, RED)
    assert [canvas.get(x, 3) for x in range(4)] == [RED] * 4
    assert bytes(canvas.pixels).count(bytes(RED)) == 4


def test_polygon_fills_pixel_centres_inside_once() -> None:
    canvas = Canvas(10, 10)
    canvas.polygon([(2, 2), (8, 2), (8, 6), (2, 6)], BLUE, 0.5)  # a 6 x 4 rectangle
    inside = [(x, y) for y in range(10) for x in range(10) if canvas.get(x, y) != WHITE]
    assert inside == [(x, y) for y in range(2, 6) for x in range(2, 8)]
    assert {canvas.get(x, y) for x, y in inside} == {(128, 128, 255)}  # blended once, not twice at edges


def test_lines_are_continuous_and_as_wide_as_asked() -> None:
    canvas = Canvas(20, 20)
    canvas.line([(1, 1), (18, 9)], RED)
    for x in range(1, 19):
        assert any(canvas.get(x, y) == RED for y in range(20)), x
    thick = Canvas(20, 20)
    thick.line([(2, 10), (17, 10)], RED, width=3)
    assert [y for y in range(20) if thick.get(10, y) == RED] == [9, 10, 11]


def test_text_draws_each_glyph_at_its_anchor_and_scale() -> None:
    assert text_size("ab", 1) == (11, 7) and text_size("ab", 2) == (22, 14) and text_size("", 1) == (0, 7)
    canvas = Canvas(30, 20)
    canvas.text(2, 3, "A1", RED)
    inked = {(x, y) for y in range(20) for x in range(30) if canvas.get(x, y) == RED}
    expected = {(2 + c, 3 + r) for c, r in glyph("A")} | {(8 + c, 3 + r) for c, r in glyph("1")}
    assert inked == expected
    centred = Canvas(30, 20)
    centred.text(15, 10, "A", RED, scale=2, anchor="mm")
    xs = [x for y in range(20) for x in range(30) if centred.get(x, y) == RED]
    ys = [y for y in range(20) for x in range(30) if centred.get(x, y) == RED]
    assert (min(xs), max(xs), min(ys), max(ys)) == (10, 19, 3, 16)  # 10 x 14 pixels around (15, 10)
    upright = Canvas(20, 20)
    upright.text(10, 10, "I", RED, anchor="mm", vertical=True)  # "I" turned: a bar 5 wide, 7 high -> 7 wide
    width = {x for y in range(20) for x in range(20) if upright.get(x, y) == RED}
    assert len(width) == 7


def test_the_font_covers_printable_ascii_and_falls_back_to_a_question_mark() -> None:
    assert set(GLYPHS) == {chr(c) for c in range(32, 127)}
    assert all(0 <= c < 5 and 0 <= r < 7 for pixels in GLYPHS.values() for c, r in pixels)
    assert glyph("é") == glyph("?") and glyph(" ") == ()
