"""Images for the emoji builders: composite on white, rasterise SVG, centre on a square, save a bare PNG.

Noto glyphs, Twemoji PNGs and Fluent/OpenMoji SVGs all end the same way: an RGB image on white, centred on a
white square, resized with LANCZOS and saved as an optimised PNG without metadata (same pixels, same bytes).
"""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from jsdlib.common.io import atomic_path

SVG_RENDER_SIZE = 256      # SVGs are drawn at this size, then downscaled with LANCZOS (like Noto's 136 px cells)


def on_white(image):
    """An RGBA/LA/P image composited on white, as RGB."""
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")


def to_square(image, size: int):
    """Centre the image on a white square canvas (side = its longer edge) and resize with LANCZOS."""
    side = max(image.size)
    canvas = Image.new("RGB", (side, side), "white")
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def load_cairosvg():
    """The ``cairosvg`` module (an optional engine, imported only here), or a RuntimeError saying what to install."""
    try:
        import cairosvg  # noqa: PLC0415 (optional engine; needs the system libcairo2)
    except (ImportError, OSError) as e:
        raise RuntimeError(f"rasterising SVG emoji needs cairosvg and the system libcairo2 ({e}); run "
                           "`pip install cairosvg` and `apt-get install libcairo2`") from e
    return cairosvg


def svg_to_png(data: bytes, size: int = SVG_RENDER_SIZE) -> bytes:
    """An SVG's bytes rasterised with CairoSVG to a ``size`` x ``size`` PNG."""
    return load_cairosvg().svg2png(bytestring=data, output_width=size, output_height=size)


def render_file(data: bytes, suffix: str, size: int):
    """A source file's bytes -> an RGB size x size image on white (SVG via CairoSVG at SVG_RENDER_SIZE)."""
    if suffix == ".svg":
        data = svg_to_png(data)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return to_square(on_white(im), size)


def save_png(image, path: Path) -> None:
    """Save as an optimised PNG with no metadata (no timestamp, no text chunks): same pixels, same bytes."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)


__all__ = ["SVG_RENDER_SIZE", "on_white", "to_square", "load_cairosvg", "svg_to_png", "render_file", "save_png"]
