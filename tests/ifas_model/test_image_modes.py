"""The processor converts images as judge and scf ingest do (scf.imaging.to_rgb): 16-bit, alpha, float modes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def built():
    from ifas_model.presets import build_model

    return build_model("tiny", seed=0)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 224x224 RGB crop with structure (gradients plus noise), so that different pictures score differently."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:224, 0:224]
    base = np.stack([x, y, (x + y) // 2], axis=-1).astype(np.int64)
    return np.clip(base + rng.integers(-30, 30, base.shape), 0, 255).astype(np.uint8)


def _score(built, images):
    from ifas_model.inference import score_images

    model, processor = built
    return score_images(model, processor, images)


def test_a_16_bit_grey_png_scores_as_its_8_bit_version_not_as_white(built, photo, tmp_path):
    grey8 = Image.fromarray(photo).convert("L")
    path = tmp_path / "ir.png"
    Image.fromarray(np.asarray(grey8).astype(np.uint16) * 257).save(path)  # a 16-bit PNG, as IR/depth crops ship
    grey16 = Image.open(path)
    assert grey16.mode.startswith("I;16") or grey16.mode == "I"
    s16, s8 = _score(built, [grey16, grey8])
    assert abs(s16 - s8) <= 1e-6
    # the tiny random model's scores barely move, so the pixels show what was scored: the picture, not white
    model, processor = built
    white = Image.new("L", grey8.size, 255)  # what Pillow's convert("RGB") turns the 16-bit crop into
    pixels = processor([grey16, grey8, white], return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(pixels[0], pixels[1])
    assert np.abs(pixels[0] - pixels[2]).max() > 1.0


def test_an_rgba_crop_scores_as_its_composite_over_white_like_judge(built, photo):
    from ifas_eval.predict import judge

    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:, :112, 3] = 0  # left half transparent
    image = Image.fromarray(rgba)
    over_white = photo.copy()
    over_white[:, :112] = 255
    s_rgba, s_white = _score(built, [image, Image.fromarray(over_white)])
    assert abs(s_rgba - s_white) <= 1e-6
    model, processor = built
    pixels = processor([image, Image.fromarray(over_white), image.convert("RGB")], return_tensors="np")
    np.testing.assert_array_equal(pixels["pixel_values"][0], pixels["pixel_values"][1])
    assert np.abs(pixels["pixel_values"][0] - pixels["pixel_values"][2]).max() > 1.0  # alpha not simply dropped
    record = judge(model, processor, image, detect_faces=False, max_new_tokens=2)
    assert abs(record["p_real"] - float(s_rgba)) <= 1e-6


def test_a_float_image_is_a_clear_error_naming_its_index_and_mode(built, photo):
    from scf.imaging import ImageModeError

    model, processor = built
    floats = Image.fromarray(np.asarray(Image.fromarray(photo).convert("L")).astype(np.float32) / 255)
    with pytest.raises(ImageModeError, match=r"images\[1\]: unsupported image mode 'F'"):
        _score(built, [Image.fromarray(photo), floats])
    with pytest.raises(ValueError, match="mode 'F'"):  # ImageModeError is a ValueError
        processor([floats])


def test_rgb_pixels_are_unchanged_and_arrays_are_refused(built, photo):
    model, processor = built
    rgb = Image.fromarray(photo)
    ours = processor([rgb, rgb.convert("P").convert("RGB")], return_tensors="np")["pixel_values"]
    pillow = processor.image_processor(images=[rgb, rgb.convert("P").convert("RGB")], return_tensors="np")
    np.testing.assert_array_equal(ours, pillow["pixel_values"])  # ordinary RGB: bit-identical to before
    with pytest.raises(TypeError, match=r"images\[0\] is a numpy.ndarray, not a PIL image"):
        processor([photo])


def test_training_decodes_corpus_images_with_the_same_conversion(tmp_path):
    """ifas-train's image decoding (a hand-made corpus of 16-bit or RGBA images) is scf.imaging.to_rgb's, not
    Pillow's convert("RGB") (which turns 16-bit grey white and drops alpha)."""
    import io

    import numpy as np
    from PIL import Image

    from ifas_model.training.data import decode_image
    from scf.imaging import to_rgb

    grey8 = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey8.astype(np.uint16) * 257).save(buf, format="PNG")  # 16-bit grey
    decoded = np.asarray(decode_image({"bytes": buf.getvalue(), "path": None}))
    assert decoded.shape == (64, 64, 3) and np.array_equal(decoded[..., 0], grey8)
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent black: white over white
    path = tmp_path / "a.png"
    rgba.save(path)
    assert np.array_equal(np.asarray(decode_image({"bytes": None, "path": str(path)})), to_rgb(rgba))
    assert np.asarray(decode_image({"bytes": None, "path": str(path)})).min() == 255
