"""The near-duplicate benchmark's transformations: how a cover's copies differ from it in the wild.

Each is a plain function ``PIL.Image (RGB) -> PIL.Image (RGB)``, deterministic (no randomness),
so that a copy is the same in the benchmark and in the tests.  ``TRANSFORMS`` lists them by name;
``MIRROR`` is reported on its own (no hash or CNN feature here is mirror-invariant by design).
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Callable

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

Transform = Callable[[Image.Image], Image.Image]


def resize(fraction: float) -> Transform:
    def apply(img: Image.Image) -> Image.Image:
        w, h = img.size
        return img.resize((max(1, round(w * fraction)), max(1, round(h * fraction))), Image.Resampling.LANCZOS)

    return apply


def crop(fraction: float) -> Transform:
    """Cut ``fraction`` of the width and of the height, more from the right and bottom (2:1)."""

    def apply(img: Image.Image) -> Image.Image:
        w, h = img.size
        cut_w, cut_h = round(w * fraction), round(h * fraction)
        left, top = cut_w // 3, cut_h // 3
        return img.crop((left, top, left + w - cut_w, top + h - cut_h))

    return apply


def jpeg(quality: int) -> Transform:
    def apply(img: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    return apply


def rotate(degrees: float) -> Transform:
    """Rotated about the centre, same size, corners filled white (a crooked scan)."""
    return lambda img: img.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))


def brightness_contrast(brightness: float, contrast: float) -> Transform:
    return lambda img: ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(brightness)).enhance(contrast)


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf", size)
    except OSError:  # no DejaVu on this machine: Pillow's own scalable default
        return ImageFont.load_default(size)


def overlay() -> Transform:
    """A shop sticker: a white box with black text over the bottom-right corner (about 8% of the area)."""

    def apply(img: Image.Image) -> Image.Image:
        out = img.copy()
        w, h = out.size
        draw = ImageDraw.Draw(out)
        box = (round(w * 0.58), round(h * 0.80), round(w * 0.97), round(h * 0.97))
        draw.rectangle(box, fill=(255, 255, 255), outline=(0, 0, 0), width=max(1, w // 150))
        draw.text((box[0] + w * 0.03, box[1] + h * 0.03), "SALE 9.99", fill=(0, 0, 0), font=_font(max(8, h // 14)))
        return out

    return apply


def border(fraction: float, colour=(0, 0, 0)) -> Transform:
    """A solid frame ``fraction`` of the side wide on every side."""

    def apply(img: Image.Image) -> Image.Image:
        w, h = img.size
        return ImageOps.expand(img, border=(round(w * fraction), round(h * fraction)), fill=colour)

    return apply


def greyscale() -> Transform:
    return lambda img: ImageOps.grayscale(img).convert("RGB")


def mirror() -> Transform:
    return ImageOps.mirror


MIRROR = "mirror"
TRANSFORMS: dict[str, Transform] = {
    "resize-50": resize(0.5),
    "resize-25": resize(0.25),
    "crop-10": crop(0.10),
    "crop-25": crop(0.25),
    "jpeg-20": jpeg(20),
    "rotate-5": rotate(5),
    "bright-contrast": brightness_contrast(1.25, 0.75),
    "overlay": overlay(),
    "border-10": border(0.10),
    "greyscale": greyscale(),
    MIRROR: mirror(),
}


def transformed_jpeg(img: Image.Image, name: str) -> bytes:
    """The copy as a file would hold it: JPEG quality 90 (jpeg-20 keeps its own quality)."""
    out = TRANSFORMS[name](img.convert("RGB"))
    buffer = io.BytesIO()
    out.save(buffer, format="JPEG", quality=20 if name == "jpeg-20" else 90)
    return buffer.getvalue()
