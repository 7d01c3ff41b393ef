"""Work on one item, in a worker process: decode, pick frames, find the face, crop, encode -> rows and skips.

Everything here is a plain function of picklable arguments so that `concurrent.futures.ProcessPoolExecutor`
can run it. Nothing heavy is imported at module level beyond numpy (cv2 and PIL inside the functions).
"""

from __future__ import annotations

import errno as errno_codes
import io
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from scf import faces, video

from .base import Item, natural_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkSettings:
    """How an item becomes rows (the image-affecting part of the ingest settings)."""

    frames: str = "flip"  # "flip": frames 6 and 6 + n // 2; "<k>": k equidistant frames
    detect: bool = True  # False: the input is a face crop already; it is only squared and resized
    margin: float = faces.DEFAULT_MARGIN
    size: int = faces.DEFAULT_SIZE
    neighbours: int = 3  # frames tried on each side of a sampled frame where no face is found
    image_format: str = "png"  # "png" (lossless; FLIP's crops are PNG) or "jpeg" (quality 95, several times smaller)

    def frame_indices(self, n: int) -> list[int]:
        if self.frames == "flip":
            return video.flip_frame_indices(n)
        return video.equidistant_frame_indices(n, int(self.frames))


@dataclass
class Outcome:
    """Rows (benchmark columns, image as ``{"bytes", "path"}``) and skips ``(key, reason, detail)`` of an item."""

    rows: list[dict[str, Any]]
    skips: list[tuple[str, str, str]]


class SkipItem(Exception):
    """Raised inside a worker to skip an item with a reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


READ_ERROR = "I/O error"
"""The skip reason of an input the operating system could not read for a reason taken as transient (EIO, ESTALE,
ETIMEDOUT, ENOENT in the middle of a run: any `OSError` carrying an ``errno`` other than `PERMISSION_ERRNOS`; a
network file system hiccup, a remount). Unlike a decoding error (Pillow's "image file is truncated" or "cannot
identify" carry no ``errno``) it says nothing about the file: such skips are not kept from one run to the next (the
rerun reads the file again), and ``scf ingest`` exits non-zero while any is left, naming one."""

PERMISSION_DENIED = "permission denied"
"""The skip reason of an input this user may not read (`PERMISSION_ERRNOS`: a file with mode 000, owned by
someone else). A rerun would fail the same way until the permissions change, so, unlike `READ_ERROR`, it does not
make ``scf ingest`` exit non-zero (the rows are written, ``--push-to-hub`` pushes them); the summary counts such
files. Like "missing file" the skip is not kept from one run to the next: after ``chmod``/``chown``, rerunning the
same command reads the files again (an EACCES during a remount is retried the same way)."""

PERMISSION_ERRNOS = frozenset({errno_codes.EACCES, errno_codes.EPERM})
"""The errnos of `PERMISSION_DENIED`; every other errno of a failed read is `READ_ERROR` (transient)."""


def read_error(error: BaseException) -> bool:
    """Whether ``error`` is the operating system failing to read (an `OSError` with an ``errno``), not bad data."""
    return isinstance(error, OSError) and not isinstance(error, video.VideoReadError) and error.errno is not None


def os_skip(error: OSError) -> SkipItem:
    """The skip of an input whose read failed with ``error`` (a `read_error`): `PERMISSION_DENIED` for
    `PERMISSION_ERRNOS`, else `READ_ERROR`."""
    reason = PERMISSION_DENIED if error.errno in PERMISSION_ERRNOS else READ_ERROR
    return SkipItem(reason, _read_error_detail(error))


def _read_error_detail(error: OSError) -> str:
    name = errno_codes.errorcode.get(error.errno, str(error.errno))
    return f"{error.strerror or error} ({name})"[:200]


def check_readable(path: Path) -> None:
    """Read ``path`` to its end; `SkipItem` (`READ_ERROR` or `PERMISSION_DENIED`: `os_skip`) when the operating
    system cannot.

    Called only after OpenCV failed on a video (OpenCV reports no ``errno``): tells an I/O failure, which a rerun
    retries, from a video that is really broken, which stays a permanent skip.
    """
    try:
        with open(path, "rb") as f:
            while f.read(1 << 22):
                pass
    except OSError as e:
        if read_error(e):
            raise os_skip(e) from e


PARENT_POLL_SECONDS = 1.0


def init_worker(parent_pid: int | None = None) -> None:
    """Worker-process initialiser: one OpenCV thread per process (the pool supplies the parallelism).

    Args:
        parent_pid: the ``scf ingest`` process. When it dies without shutting the pool down (``kill -9``, the
            OOM killer, a preempted job), the worker would live on under init; a daemon thread notices that its
            parent changed (checked every `PARENT_POLL_SECONDS`) and ends the worker. Nothing is lost: the
            item in hand was not written, and the rerun redoes it.
    """
    import cv2

    cv2.setNumThreads(1)
    if parent_pid is not None:
        import threading

        threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="scf-parent-watch", daemon=True).start()


def _exit_with_parent(parent_pid: int) -> None:
    import os
    import time

    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)  # the parent is gone: no shard of ours can be written any more


def load_image(path: Path) -> np.ndarray:
    """An image file as an RGB uint8 array; `SkipItem` with the reason for anything unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        if not path.is_file():
            raise SkipItem("missing file", str(path))
        if path.stat().st_size == 0:
            raise SkipItem("empty file", "0 bytes")
        with Image.open(path) as im:
            im.load()
            return faces.to_rgb(im)
    except UnidentifiedImageError as e:
        raise SkipItem("unreadable image", "not an image format Pillow knows") from e
    except Image.DecompressionBombError as e:
        raise SkipItem("unreadable image", f"too large ({e})") from e
    except faces.ImageModeError as e:
        raise SkipItem("unsupported image mode", str(e)) from e
    except OSError as e:
        if read_error(e):  # the disk, the network or the permissions, not the file's contents: a rerun retries it
            raise os_skip(e) from e
        raise SkipItem("corrupt image", str(e)[:200]) from e
    except (SyntaxError, ValueError) as e:
        raise SkipItem("corrupt image", str(e)[:200]) from e


def encode(image: Any, image_format: str) -> dict[str, Any]:  # noqa: ANN401 - PIL.Image
    buf = io.BytesIO()
    if image_format == "jpeg":
        image.save(buf, format="JPEG", quality=95)
    else:
        image.save(buf, format="PNG", compress_level=3)  # 3: near the size of 6 at a third of the time
    return {"bytes": buf.getvalue(), "path": None}


def face_box(image: np.ndarray, settings: WorkSettings, item: Item | None = None) -> faces.Box | None:
    """The box to crop: the dataset's box when it has one, else the detector's; None when no face."""
    if item is not None and item.box is not None:
        h, w = image.shape[:2]
        sx = w / item.box_space if item.box_space else 1.0
        sy = h / item.box_space if item.box_space else 1.0
        x, y, bw, bh = item.box
        box = (int(round(x * sx)), int(round(y * sy)), int(round(bw * sx)), int(round(bh * sy)))
        if box[2] > 1 and box[3] > 1 and box[0] < w and box[1] < h and box[0] + box[2] > 0 and box[1] + box[3] > 0:
            return box
    return faces.detect_largest_face(image)


def _row(item: Item, image: Any, key: str, frame_index: int, settings: WorkSettings,  # noqa: ANN401
         source: str) -> dict[str, Any]:
    m = item.meta
    return {"image": encode(image, settings.image_format), "label": m.label, "attack_type": m.attack_type,
            "attack_detail": m.attack_detail, "source": source, "subject_id": m.subject_id,
            "video_id": item.video_id, "frame_index": int(frame_index), "split": item.split, "path": key}


def _crop(image: np.ndarray, settings: WorkSettings, item: Item) -> Any | None:  # noqa: ANN401
    if not settings.detect and item.box is None:
        return faces.crop_face(image, None, 0.0, settings.size)
    box = face_box(image, settings, item)
    return None if box is None else faces.crop_face(image, box, settings.margin, settings.size)


def _pending_slots(targets: list[int], done: set[int], skipped: set[int]) -> list[int]:
    """Targets not yet covered: a done frame covers the nearest target; a logged skip covers its own."""
    covered = set(skipped)
    for d in done:
        covered.add(min(targets, key=lambda t: (abs(t - d), t)))
    return [t for t in targets if t not in covered]


def process(item: Item, root: str, source: str, settings: WorkSettings, done: frozenset[str] = frozenset(),
            skipped: frozenset[str] = frozenset()) -> Outcome:
    """Turn one item into rows and skips. Never raises for bad input: problems become skips.

    Args:
        item: the item.
        root: dataset root (the item's paths are relative to it).
        source: the ``source`` column value.
        settings: frame rule, detection, crop and encoding.
        done: keys of this item's rows already on disk (resume): frames of videos not to redo.
        skipped: keys of this item's sampled frames already logged as skipped.
    """
    base = Path(root)
    try:
        if item.kind == "image":
            image = load_image(base / item.path)
            crop = _crop(image, settings, item)
            if crop is None:
                raise SkipItem("no face detected", "")
            return Outcome([_row(item, crop, item.key, item.frame_index or 0, settings, source)], [])
        if item.kind == "video":
            return _process_video(item, base, source, settings, done, skipped)
        return _process_frames(item, base, source, settings, done, skipped)
    except SkipItem as e:
        return Outcome([], [(item.key, e.reason, e.detail)])
    except OSError as e:
        if not read_error(e):
            logger.debug("unexpected error on %s", item.path, exc_info=True)
            return Outcome([], [(item.key, "unexpected error", f"{type(e).__name__}: {e}"[:300])])
        skip = os_skip(e)
        return Outcome([], [(item.key, skip.reason, skip.detail)])
    except Exception as e:  # noqa: BLE001 - a worker never dies on one bad file; the skip names the error
        logger.debug("unexpected error on %s", item.path, exc_info=True)
        return Outcome([], [(item.key, "unexpected error", f"{type(e).__name__}: {e}"[:300])])


def _process_video(item: Item, base: Path, source: str, settings: WorkSettings, done: frozenset[str],
                   skipped: frozenset[str]) -> Outcome:
    path = base / item.path
    try:
        n = video.frame_count(path)
    except video.VideoReadError as e:
        reason = "empty file" if "0 bytes" in str(e) else "missing file" if "no such file" in str(e) else \
            "unreadable video"
        if reason == "unreadable video":
            check_readable(path)
        raise SkipItem(reason, str(e).split(": ", 1)[-1]) from e
    targets = settings.frame_indices(n)
    done_idx = {int(k.rsplit("#", 1)[1]) for k in done}
    skip_idx = {int(k.rsplit("#", 1)[1]) for k in skipped}
    pending = _pending_slots(targets, done_idx, skip_idx)
    if not pending:
        return Outcome([], [])
    radius = settings.neighbours if settings.detect else 0
    wanted = {i for t in pending for i in video.neighbour_frame_indices(t, n, radius)}
    try:
        frames = video.read_frame_map(path, wanted)
    except video.VideoReadError as e:
        check_readable(path)
        raise SkipItem("unreadable video", str(e).split(": ", 1)[-1]) from e
    if not frames:
        check_readable(path)
        raise SkipItem("unreadable video", f"no frame of {sorted(wanted)[:4]}... decodes (container says {n})")
    outcome = _fill_slots(item, source, settings, pending, done_idx, n, radius, frames.get,
                          key=lambda i: f"{item.path}#{i}")
    if any(reason == "unreadable frame" for _, reason, _ in outcome.skips):
        check_readable(path)  # frames that did not decode because a read failed: the whole video is retried
    return outcome


def _process_frames(item: Item, base: Path, source: str, settings: WorkSettings, done: frozenset[str],
                    skipped: frozenset[str]) -> Outcome:
    files = sorted(item.frames, key=lambda f: natural_key(PurePosixPath(f).name))
    if not files:
        raise SkipItem("empty frame folder", "")
    n = len(files)
    position = {f: i for i, f in enumerate(files)}
    done_idx = {position[k] for k in done if k in position}
    skip_idx = {int(k.rsplit("#", 1)[1]) for k in skipped}
    pending = _pending_slots(settings.frame_indices(n), done_idx, skip_idx)
    radius = settings.neighbours if settings.detect else 0
    cache: dict[int, np.ndarray | None] = {}

    def get(i: int) -> np.ndarray | None:
        if i not in cache:
            try:
                cache[i] = load_image(base / files[i])
            except SkipItem as e:
                if e.reason in (READ_ERROR, PERMISSION_DENIED):  # not the frame's: the next run retries the folder
                    raise
                cache[i] = None
        return cache[i]

    return _fill_slots(item, source, settings, pending, done_idx, n, radius, get, key=lambda i: files[i])


def _fill_slots(item: Item, source: str, settings: WorkSettings, pending: list[int], used: set[int], n: int,
                radius: int, get: Any, key: Any) -> Outcome:  # noqa: ANN401
    rows, skips = [], []
    used = set(used)
    for target in pending:
        found = False
        decoded = 0
        for i in video.neighbour_frame_indices(target, n, radius):
            if i in used:
                continue
            frame = get(i)
            if frame is None:
                continue
            decoded += 1
            crop = _crop(frame, settings, item)
            if crop is None:
                continue
            rows.append(_row(item, crop, key(i), i, settings, source))
            used.add(i)
            found = True
            break
        if not found:
            reason = "no face detected" if decoded else "unreadable frame"
            skips.append((f"{item.path}#{target}", reason,
                          f"frame {target} and {radius} neighbour(s) each side of {n} frames"))
    return Outcome(rows, skips)
