"""Video frame sampling and decoding with OpenCV (.avi, .mov, .mp4, ...), rotation metadata honoured.

Used by ``scf ingest`` and by ``ifas-predict``. The whole public surface:

* `flip_frame_indices(n)`: the FLIP/SSDG rule, frames 6 and ``6 + n // 2`` (FLIP's and SSDG's MCIO crops);
* `equidistant_frame_indices(n, k)`: ``k`` frames spread evenly over the video;
* `neighbour_frame_indices(target, n, radius)`: the frames tried, in order, for a sampled frame without a face
  (the frame itself, then +1, -1, +2, -2, ... up to ``radius``: ``scf ingest --neighbours``, ``ifas-predict``);
* `frame_count(path)`: number of frames (counted by decoding when the container does not say);
* `read_frames(path, indices)`: the frames at those indices as RGB uint8 arrays, in the order asked;
* `read_frame_map(path, indices)`: the same as a dict, leaving out indices the video does not have.

Decoding is sequential (``grab`` up to each wanted index, ``retrieve`` only those): slower than seeking on long
videos, but exact on every container, whereas ``CAP_PROP_POS_FRAMES`` seeks to the previous keyframe on some.
Rotation: OpenCV's FFmpeg backend applies the container's rotation tag when ``CAP_PROP_ORIENTATION_AUTO`` is
on (it is asked for explicitly); where a backend refuses that, the tag read from ``CAP_PROP_ORIENTATION_META``
is applied here instead, so portrait phone videos (MSU-MFSD, SiW) come out upright either way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".avi", ".mov", ".mp4", ".m4v", ".mkv", ".webm", ".wmv", ".mpg", ".mpeg", ".3gp", ".flv")
"""File extensions treated as videos (lower case)."""

FLIP_FIRST_FRAME = 6


class VideoReadError(OSError):
    """A video that cannot be opened or decoded. The message names the file."""


def flip_frame_indices(n: int) -> list[int]:
    """Frame indices of the FLIP/SSDG rule: ``[6, 6 + n // 2]`` for a video of ``n`` frames.

    Short videos (``n <= 6 + n // 2``) get indices clamped to the last frame and de-duplicated, so a video of
    one frame gives ``[0]`` and ``n == 0`` gives ``[]``.
    """
    if n <= 0:
        return []
    wanted = (FLIP_FIRST_FRAME, FLIP_FIRST_FRAME + n // 2)
    return sorted({min(i, n - 1) for i in wanted})


def equidistant_frame_indices(n: int, k: int) -> list[int]:
    """``k`` frame indices spread evenly over ``n`` frames (the centre of each of ``k`` equal segments).

    Returns every frame when ``k >= n``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n <= 0:
        return []
    if k >= n:
        return list(range(n))
    return sorted({int((i + 0.5) * n / k) for i in range(k)})


def neighbour_frame_indices(target: int, n: int, radius: int) -> list[int]:
    """The frames to try for sampled frame ``target`` of a video of ``n`` frames, in the order tried.

    ``target`` first, then ``target + 1``, ``target - 1``, ``target + 2``, ... up to ``radius`` frames on each
    side, leaving out indices outside ``[0, n)``. ``scf ingest`` takes the first of them in which a face is
    found (``--neighbours`` is ``radius``), and ``ifas-predict`` picks a video's frames the same way.

    Args:
        target: the sampled frame index (`flip_frame_indices`, `equidistant_frame_indices`).
        n: number of frames of the video.
        radius: frames tried on each side (0: the target only).

    Returns:
        Frame indices, e.g. ``neighbour_frame_indices(6, 8, 3) == [6, 7, 5, 4, 3]``.
    """
    order = [target]
    for d in range(1, radius + 1):
        order += [target + d, target - d]
    return [i for i in order if 0 <= i < n]


def _open(path: str | Path):  # noqa: ANN202 - (cv2.VideoCapture, rotation to apply by hand)
    import cv2

    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: empty file (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        from scf.schema import utf8_path_problem

        raise VideoReadError(utf8_path_problem(path) or f"{path}: cannot be opened as a video")
    # The backend applies the rotation tag itself when it accepts ORIENTATION_AUTO; else we do it by hand.
    auto = bool(cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1))
    degrees = 0 if auto else int(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0) % 360
    return cap, degrees


def rotate(frame: np.ndarray, degrees: int) -> np.ndarray:
    """Rotate a frame clockwise by a multiple of 90 degrees (a container's rotation tag)."""
    import cv2

    codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    degrees %= 360
    if degrees == 0:
        return frame
    if degrees not in codes:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {degrees}")
    return cv2.rotate(frame, codes[degrees])


def frame_count(path: str | Path) -> int:
    """Number of frames of a video.

    The container's count is used when it gives one; otherwise (or when it is clearly wrong, e.g. negative)
    the frames are counted by decoding.

    Raises:
        VideoReadError: the file is missing, empty or cannot be opened, or has no decodable frame.
    """
    import cv2

    cap, _ = _open(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if n <= 0:
            n = 0
            while cap.grab():
                n += 1
    finally:
        cap.release()
    if n <= 0:
        raise VideoReadError(f"{path}: no decodable frame")
    return n


def read_frame_map(path: str | Path, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """Decode the frames at ``indices`` as ``(H, W, 3)`` RGB uint8 arrays.

    Indices past the real end of the video (containers sometimes over-report their length) are left out of
    the result rather than raising, so the caller can fall back to other frames.

    Raises:
        VideoReadError: the file is missing, empty or cannot be opened.
    """
    import cv2

    wanted = sorted({int(i) for i in indices if int(i) >= 0})
    frames: dict[int, np.ndarray] = {}
    if not wanted:
        return frames
    cap, degrees = _open(path)
    try:
        last = wanted[-1]
        targets = set(wanted)
        for index in range(last + 1):
            if not cap.grab():
                break
            if index in targets:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None:
                    frames[index] = rotate(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), degrees)
    finally:
        cap.release()
    return frames


def read_frames(path: str | Path, indices: Iterable[int]) -> list[np.ndarray]:
    """The frames at ``indices`` (in the order given) as ``(H, W, 3)`` RGB uint8 arrays.

    Raises:
        VideoReadError: the file cannot be opened, or a requested frame cannot be decoded (named).
    """
    indices = [int(i) for i in indices]
    frames = read_frame_map(path, indices)
    missing = [i for i in indices if i not in frames]
    if missing:
        raise VideoReadError(f"{path}: frame(s) {missing} cannot be decoded")
    return [frames[i] for i in indices]
