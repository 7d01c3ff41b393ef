"""`ifas-predict` / `judge` / the demo see what training saw: ingest's frame choice, crop and decoding.

Review 20: a video frame without a face is replaced by a neighbour with one (as `scf ingest` does), a frame
judged whole is flagged in the top-level record, the crop (``--margin``, ``--no-detect``) is an option and is
recorded, several faces and tiny images are reported, and the demo decodes uploads with `scf.imaging.to_rgb`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from ifas_model.presets import build_model

    model, processor = build_model("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "final"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    from ifas_eval.scoring import load_checkpoint

    return load_checkpoint(str(tiny_checkpoint))


def _astronaut():
    import skimage.data

    return skimage.data.astronaut()


def _video(path, n=16, blank=()):
    """An MJPG clip of the astronaut drifting right; the frames in ``blank`` are empty grey (a blink)."""
    import cv2

    face = cv2.resize(_astronaut(), (200, 200))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(n):
        frame = np.full((240, 320, 3), 40, np.uint8)
        if i not in blank:
            frame[20:220, 10 + 3 * i:210 + 3 * i] = face
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _predict(*args):
    from ifas_eval.cli import predict

    res = CliRunner().invoke(predict, [*map(str, args), "--max-new-tokens", "2"])
    return res, [json.loads(line) for line in res.stdout.splitlines()]


def _ingested_rows(path, settings=None):
    """The rows `scf ingest` would store for one video (its worker, default settings)."""
    from scf.ingest.base import Item, Meta
    from scf.ingest.worker import WorkSettings, process

    item = Item(path=path.name, kind="video", meta=Meta(0, "replay"), split="train", video_id=path.stem)
    outcome = process(item, str(path.parent), "test", settings or WorkSettings())
    return outcome.rows


def test_a_video_frame_without_a_face_is_replaced_by_its_neighbour_as_ingest_does(tiny_checkpoint, loaded,
                                                                                   tmp_path):
    from ifas_model.inference import score_images
    from ifas_model.training.data import decode_image

    clip = _video(tmp_path / "clip.avi", blank={6})
    res, (rec,) = _predict(clip, "--checkpoint", tiny_checkpoint)
    assert res.exit_code == 0, res.output
    # frame 6 (FLIP's first) is blank: frame 7 is judged, as scf ingest stores clip.avi#7
    assert [(f["sampled"], f["index"]) for f in rec["frames"]] == [(6, 7), (14, 14)]
    assert rec["frames_without_face"] == 0 and "face_found" not in rec
    rows = _ingested_rows(clip)
    assert [r["frame_index"] for r in rows] == [7, 14]
    # and the frame scores are the scores of the crops training / ifas-eval use
    model, processor = loaded
    trained = score_images(model, processor, [decode_image(r["image"]) for r in rows])
    assert [f["p_real"] for f in rec["frames"]] == pytest.approx([float(p) for p in trained], abs=1e-6)


def test_a_video_frame_judged_whole_is_flagged_at_the_top(tiny_checkpoint, tmp_path):
    clip = _video(tmp_path / "clip.avi", blank=set(range(3, 10)))  # 6 and its 3 neighbours each side: no face
    res, (rec,) = _predict(clip, "--checkpoint", tiny_checkpoint)
    assert res.exit_code == 0, res.output
    assert rec["frames_without_face"] == 1 and rec["face_found"] is False
    first, second = rec["frames"]
    assert (first["index"], first["face_box"], first["face_found"]) == (6, None, False)
    assert second["face_box"] is not None and "face_found" not in second


def test_frames_takes_ingests_spellings_flip_or_a_number(tiny_checkpoint, tmp_path):
    """review22 L1: `--frames flip` (scf ingest's default spelling) was refused; flip and K pick ingest's frames."""
    clip = _video(tmp_path / "clip.avi")
    _, (default,) = _predict(clip, "--checkpoint", tiny_checkpoint)
    res, (flip,) = _predict(clip, "--checkpoint", tiny_checkpoint, "--frames", "flip")
    assert res.exit_code == 0, res.output
    assert [f["index"] for f in flip["frames"]] == [f["index"] for f in default["frames"]] == [6, 14]
    _, (three,) = _predict(clip, "--checkpoint", tiny_checkpoint, "--frames", "3")
    rows = _ingested_rows(clip, _settings(frames="3"))
    assert [f["index"] for f in three["frames"]] == [r["frame_index"] for r in rows] and len(rows) == 3
    bad = CliRunner().invoke(_predict_command(), [str(clip), "--frames", "0"])
    assert bad.exit_code == 2 and "'0' is neither 'flip' nor a positive number of frames" in bad.output


def _settings(**kw):
    from scf.ingest.worker import WorkSettings

    return WorkSettings(**kw)


def _predict_command():
    from ifas_eval.cli import predict

    return predict


def test_margin_and_no_detect_choose_the_crop_and_the_record_says_which(tiny_checkpoint, loaded, tmp_path):
    from PIL import Image

    from ifas_model.inference import score_images
    from scf.faces import DEFAULT_MARGIN, DEFAULT_SIZE, crop_face

    photo = tmp_path / "astronaut.png"
    Image.fromarray(_astronaut()).save(photo)
    res, (default,) = _predict(photo, "--checkpoint", tiny_checkpoint)
    res, (wide,) = _predict(photo, "--checkpoint", tiny_checkpoint, "--margin", "0.4")
    res, (whole,) = _predict(photo, "--checkpoint", tiny_checkpoint, "--no-detect")
    assert default["crop"] == {"detect": True, "margin": DEFAULT_MARGIN, "size": DEFAULT_SIZE}
    assert wide["crop"] == {"detect": True, "margin": 0.4, "size": DEFAULT_SIZE}
    assert whole["crop"] == {"detect": False, "margin": 0.0, "size": DEFAULT_SIZE}
    assert whole["face_box"] is None and whole["faces"] == 0 and "face_found" not in whole
    model, processor = loaded
    rgb = _astronaut()
    box = tuple(default["face_box"])
    assert wide["face_box"] == default["face_box"]
    assert wide["p_real"] == pytest.approx(float(score_images(model, processor, [crop_face(rgb, box, 0.4)])[0]),
                                           abs=1e-6)
    assert whole["p_real"] == pytest.approx(float(score_images(model, processor, [crop_face(rgb, None)])[0]),
                                            abs=1e-6)
    res, _ = _predict(photo, "--checkpoint", tiny_checkpoint, "--margin", "-0.1")
    assert res.exit_code == 2 and "--margin" in res.output
    from ifas_eval.cli import predict

    help_text = " ".join(CliRunner().invoke(predict, ["--help"]).output.split())
    assert f"--margin default, {DEFAULT_MARGIN}" in help_text and "--no-detect" in help_text


def test_several_faces_are_counted_and_a_tiny_image_is_warned_about(tiny_checkpoint, tmp_path):
    import cv2
    from PIL import Image

    face = cv2.resize(_astronaut(), (300, 300))
    two = np.full((360, 680, 3), 200, np.uint8)
    two[30:330, 20:320] = face
    two[30:330, 360:660] = face[:, ::-1]  # the mirrored astronaut: a second face
    Image.fromarray(two).save(tmp_path / "two.png")
    Image.fromarray(cv2.resize(_astronaut(), (20, 20), interpolation=cv2.INTER_AREA)).save(tmp_path / "tiny.png")
    res, (two_rec, tiny_rec) = _predict(tmp_path / "two.png", tmp_path / "tiny.png", "--checkpoint",
                                        tiny_checkpoint)
    assert res.exit_code == 0, res.output
    assert two_rec["faces"] == 2 and two_rec["face_box"][0] < 320 and "warnings" not in two_rec
    assert tiny_rec["faces"] == 0 and tiny_rec["face_found"] is False
    assert tiny_rec["warnings"] == [tiny_rec["warnings"][0]] and "smaller than 64 px" in tiny_rec["warnings"][0]


@pytest.mark.parametrize("name", ["gray16.png", "rgba_half.png", "palette.gif"])
def test_the_demo_decodes_uploads_like_ifas_predict(loaded, tmp_path, name):
    """The page's photo component hands over a PIL image in its own mode; the page's p_real equals
    ifas-predict's on the same file (Gradio's own RGB conversion clipped 16-bit greys to white, dropped
    transparency and gave a GIF's palette indices)."""
    import cv2
    from gradio.data_classes import ImageData
    from PIL import Image

    from ifas_eval.demo import build_demo, judge_image
    from ifas_eval.predict import judge

    rgb = _astronaut()
    path = tmp_path / name
    if name == "gray16.png":
        Image.fromarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257, mode="I;16").save(path)
    elif name == "rgba_half.png":
        rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
        rgba[:, :256, 3] = 0
        Image.fromarray(rgba, mode="RGBA").save(path)
    else:
        frames = [Image.fromarray(rgb).convert("P"), Image.fromarray(np.zeros_like(rgb)).convert("P")]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    model, processor = loaded
    app = build_demo(model, processor)
    (photo,) = [b for b in app.blocks.values() if getattr(b, "elem_id", None) == "photo"]
    upload = photo.preprocess(ImageData(path=str(path), orig_name=name))
    crop, p_real, line, _ = judge_image(model, processor, upload, 0.5, max_new_tokens=2)
    expected = judge(model, processor, str(path), max_new_tokens=2)
    assert p_real == expected["p_real"]
    assert ("no face found" in line) == (expected["face_box"] is None)
