"""Face detection and cropping with OpenCV's Haar cascade (weights ship inside the opencv wheel).

Used by ``scf ingest`` and by ``ifas-predict``. The whole public surface:

* `to_rgb(image)`: any PIL image (grayscale, palette, RGBA, CMYK, 16-bit) to an ``(H, W, 3)`` uint8 RGB array
  (defined in the leaf module `scf.imaging`, which `ifas_model` may import; re-exported here with `ImageModeError`);
* `FaceDetector`: the frontal-face Haar cascade of ``cv2.data.haarcascades`` (no download at run time);
* `default_detector()`: the one `FaceDetector` with default settings shared by a process (what ``scf ingest``
  detects with);
* `detect_faces(image) -> list of boxes`: every face of an RGB array, largest first, with that detector;
* `detect_largest_face(image) -> box | None`: the largest face of an RGB array, with a shared detector;
* `crop_face(image, box, margin, size) -> PIL.Image`: a square crop around a box, resized to ``size``.

Boxes are ``(x, y, w, h)`` integer pixels of the image they were found in (OpenCV's convention).

Choices (the paper fixes 224x224 RGB inputs and nothing else):

* The Haar cascade is chosen because its weights ship inside the ``opencv-python-headless`` 4.x wheel
  (no download); it is weaker than MTCNN (what FLIP's crops used) on profile and low-light faces. Frames where it
  finds nothing are handled by the caller (``scf ingest`` tries neighbouring frames, then skips the item).
* Images larger than ``max_side`` are downscaled for detection only (speed); the box is scaled back.
* The crop is a square of side ``max(w, h) * (1 + 2 * margin)`` centred on the box; parts outside the image
  are filled by replicating the border, so a face at the edge keeps the output square and undistorted.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

import numpy as np

from .imaging import ImageModeError, to_rgb

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_CASCADE", "DEFAULT_MARGIN", "DEFAULT_SIZE", "Box", "FaceDetector", "ImageModeError", "crop_face",
           "default_detector", "detect_faces", "detect_largest_face", "to_rgb"]

Box = tuple[int, int, int, int]
"""A face box ``(x, y, w, h)`` in pixels."""

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"
DEFAULT_MARGIN = 0.2  # fraction of the box side added on each side: keeps chin, hairline and some context
DEFAULT_SIZE = 224  # the CLIP ViT-L/14 input of the paper


class FaceDetector:
    """Frontal-face detector on OpenCV's Haar cascade.

    Args:
        cascade: file name inside ``cv2.data.haarcascades`` or a path to a cascade XML.
        scale_factor: image pyramid step of ``detectMultiScale``.
        min_neighbors: detections a face needs (higher: fewer false faces, more misses).
        min_face_fraction: smallest face side as a fraction of the shorter image side.
        max_side: images are downscaled to at most this side for detection (boxes are scaled back).
    """

    def __init__(self, cascade: str = DEFAULT_CASCADE, *, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_face_fraction: float = 0.08, max_side: int = 640) -> None:
        import os

        import cv2

        path = cascade if os.path.sep in cascade else os.path.join(cv2.data.haarcascades, cascade)
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise FileNotFoundError(f"Haar cascade not found or unreadable: {path}")
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_face_fraction, self.max_side = min_face_fraction, max_side

    def detect(self, image: np.ndarray) -> list[Box]:
        """All faces of an RGB (or grayscale) uint8 array, largest first."""
        import cv2

        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                              interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        min_side = max(12, int(self.min_face_fraction * min(gray.shape)))
        found = self._cascade.detectMultiScale(gray, scaleFactor=self.scale_factor,
                                               minNeighbors=self.min_neighbors, minSize=(min_side, min_side))
        boxes = [tuple(int(round(v / scale)) for v in box) for box in np.asarray(found).reshape(-1, 4)]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)  # type: ignore[return-value]

    def largest(self, image: np.ndarray) -> Box | None:
        """The largest face box of an RGB array, or None when no face is found."""
        boxes = self.detect(image)
        return boxes[0] if boxes else None


@functools.lru_cache(maxsize=1)
def default_detector() -> FaceDetector:
    """The `FaceDetector` with default settings, built once per process and shared: the detector of
    ``scf ingest`` (and of ``ifas-predict``, so that both crop the same face)."""
    return FaceDetector()


def detect_faces(image: np.ndarray, detector: FaceDetector | None = None) -> list[Box]:
    """Every face ``(x, y, w, h)`` of an RGB uint8 array, largest first (``[]`` when none is found).

    ``detect_faces(image)[0]`` is the box ``scf ingest`` crops (`detect_largest_face`).

    Args:
        image: ``(H, W, 3)`` RGB or ``(H, W)`` grayscale uint8 array.
        detector: a configured `FaceDetector`; default: `default_detector`.
    """
    return (detector or default_detector()).detect(image)


def detect_largest_face(image: np.ndarray, detector: FaceDetector | None = None) -> Box | None:
    """The largest face ``(x, y, w, h)`` of an RGB uint8 array, or None.

    Args:
        image: ``(H, W, 3)`` RGB or ``(H, W)`` grayscale uint8 array.
        detector: a configured `FaceDetector`; default: `default_detector`, one per process.
    """
    return (detector or default_detector()).largest(image)


def crop_face(image: np.ndarray, box: Box | None, margin: float = DEFAULT_MARGIN,
              size: int = DEFAULT_SIZE) -> Image.Image:
    """A square RGB crop around a face box, resized to ``size`` x ``size``.

    Args:
        image: ``(H, W, 3)`` RGB uint8 array.
        box: ``(x, y, w, h)``; None takes the whole image (already-cropped inputs), squared by padding.
        margin: fraction of the box side added on every side (0 = the box itself).
        size: output side in pixels.

    Returns:
        A PIL RGB image of ``size`` x ``size``.
    """
    import cv2
    from PIL import Image

    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    h, w = image.shape[:2]
    if box is None:
        box = (0, 0, w, h)
        margin = 0.0
    x, y, bw, bh = box
    side = max(1, round(max(bw, bh) * (1 + 2 * margin)))
    cx, cy = x + bw / 2, y + bh / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    x1, y1 = x0 + side, y0 + side
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    crop = image[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    crop = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp)
    return Image.fromarray(crop, mode="RGB") if crop.ndim == 3 else Image.fromarray(crop).convert("RGB")
