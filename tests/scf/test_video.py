"""scf.video: the FLIP frame rule, equidistant sampling, decoding of real video files and bad ones."""

from __future__ import annotations

import numpy as np
import pytest

from scf import video


def _write_video(path, n=12, size=(48, 32), fourcc="MJPG"):
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, size)
    assert w.isOpened()
    for i in range(n):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:, :, 2] = i * 20  # red channel (BGR order) encodes the frame number
        w.write(frame)
    w.release()


def test_flip_rule_matches_flip_ssdg():
    assert video.flip_frame_indices(100) == [6, 56]
    assert video.flip_frame_indices(13) == [6, 12]
    assert video.flip_frame_indices(8) == [6, 7]  # 6 + 4 clamped to the last frame
    assert video.flip_frame_indices(3) == [2]
    assert video.flip_frame_indices(1) == [0]
    assert video.flip_frame_indices(0) == []


def test_neighbour_frame_indices_are_the_frames_tried_in_order():
    """The public name `ifas-predict` imports (it used the private `scf.ingest.worker._candidates`)."""
    assert video.neighbour_frame_indices(6, 8, 3) == [6, 7, 5, 4, 3]  # 8 and 9 are past the last frame
    assert video.neighbour_frame_indices(0, 5, 2) == [0, 1, 2]
    assert video.neighbour_frame_indices(3, 10, 0) == [3]
    assert video.neighbour_frame_indices(0, 0, 3) == []


def test_equidistant_indices():
    assert video.equidistant_frame_indices(100, 4) == [12, 37, 62, 87]
    assert video.equidistant_frame_indices(3, 10) == [0, 1, 2]
    with pytest.raises(ValueError):
        video.equidistant_frame_indices(10, 0)


@pytest.mark.parametrize("suffix,fourcc", [(".avi", "MJPG"), (".mp4", "mp4v"), (".mov", "mp4v")])
def test_read_frames_in_order_and_rgb(tmp_path, suffix, fourcc):
    path = tmp_path / f"v{suffix}"
    _write_video(path, n=12, fourcc=fourcc)
    assert video.frame_count(path) == 12
    frames = video.read_frames(path, [8, 2])
    assert [f.shape for f in frames] == [(32, 48, 3)] * 2
    # RGB order: the red channel carries the frame number (lossy codecs: approximately)
    assert abs(int(frames[0][..., 0].mean()) - 160) < 12 and abs(int(frames[1][..., 0].mean()) - 40) < 12
    assert frames[0][..., 2].mean() < 12
    assert set(video.read_frame_map(path, [11, 40])) == {11}  # past the end: left out
    with pytest.raises(video.VideoReadError, match="40"):
        video.read_frames(path, [40])


def test_bad_videos_raise_naming_the_file(tmp_path):
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 50)
    with pytest.raises(video.VideoReadError, match="empty.avi.*0 bytes"):
        video.frame_count(empty)
    with pytest.raises(video.VideoReadError, match="junk.mp4"):
        video.frame_count(junk)
    with pytest.raises(video.VideoReadError, match="no such file"):
        video.read_frames(tmp_path / "missing.avi", [0])


def test_rotation_is_clockwise_by_the_tag():
    frame = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert video.rotate(frame, 90).tolist() == [[3, 0], [4, 1], [5, 2]]
    assert video.rotate(frame, 0) is frame
    assert video.rotate(frame, 270).shape == (3, 2)
    with pytest.raises(ValueError):
        video.rotate(frame, 45)


def test_rotation_tag_is_honoured_like_ffmpeg_does(tmp_path):
    # A phone video stored landscape with a 90-degree display rotation tag must come out portrait, exactly as
    # ffmpeg itself (which applies the tag) decodes it. The tagged file is written with the ffmpeg binary
    # that the imageio-ffmpeg wheel ships (OpenCV's writer cannot write the tag).
    import subprocess

    import cv2
    import numpy as np

    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="needs imageio-ffmpeg (dev dependency)")
    from scf.video import frame_count, read_frames

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    src, tagged = tmp_path / "src.avi", tmp_path / "portrait.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(12):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:24, :32] = (0, 0, 255)  # a red top-left quadrant shows which way the frame turned
        writer.write(frame)
    writer.release()
    subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-display_rotation", "90", "-i", str(src),
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(tagged)], check=True)
    raw = subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(tagged), "-vf", "select=eq(n\\,6)",
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    assert frame_count(tagged) == 12
    (ours,) = read_frames(tagged, [6])
    assert ours.shape == (64, 48, 3)  # portrait, as displayed
    reference = np.frombuffer(raw, np.uint8).reshape(64, 48, 3)
    assert np.abs(ours.astype(int) - reference.astype(int)).mean() < 3
