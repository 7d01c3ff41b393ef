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
