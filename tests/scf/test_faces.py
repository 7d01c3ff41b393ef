"""scf.faces: mode conversion (scf.imaging, re-exported), Haar detection on a real face photo, square crops."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from scf import faces


def test_detects_the_astronaut_and_crops_224(face):
    box = faces.detect_largest_face(face)
    assert box is not None
    x, y, w, h = box
    assert 20 <= x <= 45 and 10 <= y <= 40 and 35 <= w <= 70  # the face, not the suit
    crop = faces.crop_face(face, box)
    assert crop.size == (224, 224) and crop.mode == "RGB"


def test_public_detector_names_find_what_ingest_crops(face):
    """`detect_faces` / `default_detector` (public, what ifas-predict imports): every box, largest first, the
    first being `detect_largest_face`'s; one shared detector per process."""
    boxes = faces.detect_faces(face)
    assert boxes and boxes[0] == faces.detect_largest_face(face)
    assert [b[2] * b[3] for b in boxes] == sorted((b[2] * b[3] for b in boxes), reverse=True)
    x, y, w, h = boxes[0]
    assert 20 <= x <= 45 and 10 <= y <= 40 and 35 <= w <= 70  # the face, not the suit
    assert faces.default_detector() is faces.default_detector()
    assert faces.detect_faces(np.full((200, 200, 3), 128, np.uint8)) == []


def test_no_face_in_a_flat_image():
    assert faces.detect_largest_face(np.full((120, 120, 3), 128, np.uint8)) is None


def test_crop_at_the_border_stays_square_and_margin_grows_the_crop(face):
    edge = faces.crop_face(face, (0, 0, 40, 30), margin=0.5, size=64)
    assert edge.size == (64, 64)
    whole = faces.crop_face(np.zeros((30, 60, 3), np.uint8), None, size=32)
    assert whole.size == (32, 32)
    with pytest.raises(ValueError):
        faces.crop_face(face, (0, 0, 10, 10), margin=-1)


@pytest.mark.parametrize("mode", ["L", "1", "P", "RGBA", "LA", "CMYK", "I;16", "I", "YCbCr"])
def test_to_rgb_converts_every_common_mode(face, mode):
    base = Image.fromarray(face)
    if mode in ("I;16", "I"):
        gray = np.asarray(base.convert("L")).astype(np.uint16) * 257
        img = Image.fromarray(gray.astype(np.int32 if mode == "I" else np.uint16))
        if mode == "I;16":
            img = Image.fromarray(gray, mode="I;16")
    else:
        img = base.convert(mode)
    out = faces.to_rgb(img)
    assert out.shape == (120, 115, 3) and out.dtype == np.uint8
    if mode in ("I;16", "I", "L"):
        assert abs(int(out.mean()) - int(np.asarray(base.convert("L")).mean())) <= 2  # 16 bits scaled to 8


def test_to_rgb_composites_alpha_over_white_and_rejects_float():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert faces.to_rgb(rgba)[0, 0].tolist() == [255, 255, 255]
    with pytest.raises(faces.ImageModeError, match="F"):
        faces.to_rgb(Image.new("F", (4, 4)))


def test_to_rgb_lives_in_the_leaf_module_scf_imaging_and_faces_re_exports_it():
    import subprocess
    import sys

    from scf import imaging

    assert faces.to_rgb is imaging.to_rgb and faces.ImageModeError is imaging.ImageModeError
    assert faces.to_rgb(Image.new("LA", (2, 2), (0, 0)))[0, 0].tolist() == [255, 255, 255]
    loaded = subprocess.run([sys.executable, "-c", "import sys, scf.imaging; "
                             "print(sorted({'numpy', 'PIL', 'cv2', 'torch'} & set(sys.modules)))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"  # importing the conversion costs nothing (ifas_model imports it)
