"""Noto Color Emoji glyphs: draw an emoji sequence with the colour font and keep it if it is one inked glyph.

The font (Debian ``fonts-noto-color-emoji``) is bitmap-only (CBDT), so a glyph with ink is a colour-emoji glyph;
a sequence the font does not ligate falls apart into several glyphs, and a symbol it lacks comes out blank.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from jsdlib.data.build_io import progress as progress_bar
from jsdlib.data.cldr import FE0F, ZWJ, captions_of, sort_key

FONT_SIZE = 109            # the one size Noto Color Emoji's bitmaps (CBDT, 136x128) are made for
REFERENCE_EMOJI = "\U0001F600"   # grinning face: the advance width of one glyph
INK_THRESHOLD = 250        # a pixel is ink when one of its channels is below this (on white)
MIN_INK_PIXELS = 16        # fewer ink pixels than this at full size counts as blank


def candidate_forms(seq: str) -> list[str]:
    """Ways to ask the font for ``seq``: as CLDR writes it, then with U+FE0F (fully-qualified guesses).

    CLDR keys drop every U+FE0F; fonts may need one after the first code point, or after every code point
    that precedes a ZWJ, to pick the colour glyph.
    """
    if FE0F in seq:
        return [seq]
    forms = [seq, seq[0] + FE0F + seq[1:]]
    parts = seq.split(ZWJ)
    if len(parts) > 1:
        forms.append(ZWJ.join(p + FE0F if len(p) == 1 else p for p in parts))
    return list(dict.fromkeys(forms))


class GlyphRenderer:
    """Draws an emoji sequence with the colour font and says whether it came out as one inked glyph."""

    def __init__(self, font_path: Path, font_size: int = FONT_SIZE):
        if not features.check("raqm"):
            raise RuntimeError("Pillow was built without libraqm; emoji sequences (ZWJ, skin tones, flags) "
                               "need complex text layout. Install a Pillow wheel from PyPI.")
        self.font = ImageFont.truetype(str(font_path), font_size, layout_engine=ImageFont.Layout.RAQM)
        self.advance = self.font.getlength(REFERENCE_EMOJI)
        left, _, right, _ = self.font.getbbox(REFERENCE_EMOJI)
        self.width = right - left

    def is_one_glyph(self, seq: str) -> bool:
        """True when the sequence is laid out as a single glyph: one glyph's advance and box width.

        A sequence the font does not ligate falls apart into several glyphs, each with its own advance.
        """
        left, _, right, _ = self.font.getbbox(seq)
        return abs(self.font.getlength(seq) - self.advance) < 0.5 and right - left <= 1.1 * self.width

    def draw(self, seq: str):
        """The glyph's box (the font's bitmap cell) drawn in colour on white, as an RGB image."""
        left, top, right, bottom = self.font.getbbox(seq)
        image = Image.new("RGB", (max(right - left, 1), max(bottom - top, 1)), "white")
        ImageDraw.Draw(image).text((-left, -top), seq, font=self.font, embedded_color=True)
        return image

    def render(self, seq: str):
        """(image, form drawn) for the first candidate form that is one glyph with ink, else (None, reason)."""
        reason = "not one glyph"
        for form in candidate_forms(seq):
            if not self.is_one_glyph(form):
                continue
            image = self.draw(form)
            if ink_pixels(image) >= MIN_INK_PIXELS:
                return image, form
            reason = "blank"
        return None, reason


def ink_pixels(image) -> int:
    """How many pixels of an RGB image on white are not (near) white."""
    return int((np.asarray(image).min(axis=-1) < INK_THRESHOLD).sum())


def select_emoji(annotations: dict[str, dict], renderer: GlyphRenderer, progress: bool = True):
    """Render every annotated sequence in code-point order; keep those with two captions and one inked glyph.

    Returns (kept, dropped): kept is a list of (sequence, form drawn, image); dropped counts reasons.
    """
    kept, dropped = [], {}
    for seq in progress_bar(sorted(annotations, key=sort_key), progress, "render"):
        captions = captions_of(annotations[seq])
        if not all(captions.values()):
            dropped["missing name or keywords"] = dropped.get("missing name or keywords", 0) + 1
            continue
        image, form = renderer.render(seq)
        if image is None:
            dropped[form] = dropped.get(form, 0) + 1
            continue
        kept.append((seq, form, image))
    return kept, dict(sorted(dropped.items()))


__all__ = ["FONT_SIZE", "MIN_INK_PIXELS", "candidate_forms", "GlyphRenderer",
           "ink_pixels", "select_emoji"]
