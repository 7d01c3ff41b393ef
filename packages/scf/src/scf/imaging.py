"""One RGB conversion for every tool: `to_rgb` (any PIL mode to uint8 RGB) and `ImageModeError` (a leaf module)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL import Image

logger = logging.getLogger(__name__)


class ImageModeError(ValueError):
    """An image whose pixel format has no meaningful RGB conversion (e.g. 32-bit float)."""


def to_rgb(image: Image.Image) -> np.ndarray:
    """Convert a PIL image of any common mode to an ``(H, W, 3)`` uint8 RGB array.

    The single conversion behind ``scf ingest``, ``judge`` / ``ifas-predict``, ``ifas-eval`` and
    `ifas_model.IFASProcessor`, so one face crop gets one score in every tool.

    EXIF orientation is applied. Grayscale (``L``, ``1``) is replicated to three channels; palette images are
    expanded; alpha (``RGBA``, ``LA``, ``PA``) is composited over white; ``CMYK`` and ``YCbCr`` are converted by
    Pillow; 16-bit (``I;16*``) and 32-bit integer (``I``) grayscale are scaled to 8 bits by their bit depth
    (``I;16``: value * 255 // 65535; ``I``: the same when any value exceeds 255, else taken as 8-bit values).
    An ``RGB`` image without EXIF orientation comes out pixel for pixel as ``image.convert("RGB")``.

    Args:
        image: a PIL image.

    Returns:
        ``(H, W, 3)`` uint8 array.

    Raises:
        ImageModeError: for modes without a meaningful conversion (``F`` floats and unknown modes); the message
            names the mode.
    """
    import numpy as np
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.int64)
        top = 65535 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255
        gray = np.clip(values * 255 // top, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGB", "L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(image.convert("RGB"))
    raise ImageModeError(f"unsupported image mode {mode!r}: convert it to 8-bit RGB or L first (e.g. scale floats "
                         "in [0, 1] by 255 and use Image.fromarray(array.astype('uint8')))")
