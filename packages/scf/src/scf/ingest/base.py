"""What a reader yields (`Item`, `Skip`), the reader interface, and the file walk they share."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from scf import schema
from scf.video import VIDEO_EXTENSIONS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
"""File extensions treated as still images (lower case)."""
FRAME_SUBDIRS = ("crop", "profile", "frames", "color", "rgb")
"""Sub-folder names that hold a video's frames below the folder named after the video (CASIA-FAS: ``crop/``)."""
SPLIT_ALIASES = {"train": "train", "training": "train", "dev": "dev", "devel": "dev", "val": "dev",
                 "valid": "dev", "validation": "dev", "test": "test", "eval": "test", "testing": "test"}


class IngestError(ValueError):
    """Bad arguments or a wrong layout, found before any work is done. The message names the path."""


@dataclass(frozen=True)
class Meta:
    """What a naming rule says about one file or video."""

    label: int
    attack_type: str
    attack_detail: str = ""
    subject_id: str = ""
    split: str | None = None  # None: the reader decides (protocol file, --split, or its default)

    def __post_init__(self) -> None:
        if self.attack_type not in schema.ATTACK_TYPES:
            raise ValueError(f"attack type {self.attack_type!r} is not in {schema.ATTACK_TYPES}")
        if (self.label == schema.LABEL_REAL) != (self.attack_type == "live"):
            raise ValueError(f"label {self.label} does not agree with attack type {self.attack_type!r}")


@dataclass(frozen=True)
class Item:
    """One unit of work: a still image, a video file, or a folder of a video's frames.

    ``path`` is relative to the dataset root (POSIX). For ``kind == "frames"`` it is the folder holding the
    frames and ``frames`` lists the frame files (relative paths, in temporal order). ``box`` is a face box
    ``(x, y, w, h)`` given by the dataset, in the pixel space of an image ``box_space`` pixels wide and high
    (None: the image's own pixels).
    """

    path: str
    kind: str  # "image" | "video" | "frames"
    meta: Meta
    split: str
    video_id: str
    frames: tuple[str, ...] = ()
    box: tuple[float, float, float, float] | None = None
    box_space: int | None = None
    frame_index: int | None = None  # for pre-extracted single frames (FLIP crops): the crop's number
    key: str = field(default="")  # resume key of an image item (defaults to path)
    source: str | None = None  # the `source` column when the reader knows each entry's dataset (lists)

    def __post_init__(self) -> None:
        if self.kind not in ("image", "video", "frames"):
            raise ValueError(f"kind must be image, video or frames, got {self.kind!r}")
        if self.split not in schema.SPLITS:
            raise ValueError(f"split {self.split!r} is not one of {schema.SPLITS}")
        if not self.key:
            object.__setattr__(self, "key", self.path)


@dataclass(frozen=True)
class Skip:
    """A file (or list entry) that is not ingested, with the reason. Every skip is logged and counted."""

    path: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class ReaderOptions:
    """Options a reader may use; each reader documents which ones it reads."""

    lists: tuple[Path, ...] = ()  # protocol / list files (CASIA-FAS lists, FLIP txt lists, CSV manifest)
    label_polarity: str | None = None  # "live0" or "live1": which list label means live (CASIA-FAS lists)
    split: str | None = None  # split for items whose split no rule gives
    exclude: tuple[Path, ...] = ()  # absolute folders never walked (the output folder when inside the root)
    celeba_labels: tuple[Path, ...] = ()  # CelebA-Spoof *_label.json files (or folders holding them): spoof types


def norm_split(name: str) -> str | None:
    """A folder or file name's split (``devel`` -> ``dev``, ``eval`` -> ``test``), or None."""
    return SPLIT_ALIASES.get(name.lower())


_SPLIT_DIR = re.compile(r"^(train|training|dev|devel|val|valid|validation|test|testing|eval)"
                        r"(?:_(?:files|release|set))?$", re.IGNORECASE)


def split_from_parts(parts: tuple[str, ...]) -> str | None:
    """The split named by a path component (``train``, ``Train_files``, ``test_release``, ``devel``...)."""
    for part in parts:
        m = _SPLIT_DIR.match(part)
        if m:
            return SPLIT_ALIASES[m[1].lower()]
    return None


def media_kind(name: str) -> str | None:
    """``"image"``, ``"video"`` or None (not a media file) from a file name's extension."""
    ext = os.path.splitext(name)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


@dataclass
class WalkEntry:
    """A media unit found on disk: an image file, a video file, or a folder of frame images."""

    kind: str  # "image" | "video" | "frames"
    path: str  # relative POSIX path (the folder for "frames")
    frames: tuple[str, ...] = ()

    @property
    def name_path(self) -> PurePosixPath:
        """The path a naming rule reads: a frames folder's ``crop/`` level is dropped."""
        p = PurePosixPath(self.path)
        if self.kind == "frames" and p.name.lower() in FRAME_SUBDIRS:
            return p.parent
        return p


def walk(root: Path, *, frames_as_videos: bool, exclude: tuple[Path, ...] = (),
         other: dict[str, int] | None = None) -> Iterator[WalkEntry]:
    """Media files under ``root`` in sorted order, streamed.

    Args:
        root: the dataset root.
        frames_as_videos: when True, a folder holding image files is one video of frames (CASIA-FAS ``crop/``
            folders, HiFiMask frame folders); when False, every image is its own item (CelebA-Spoof).
        exclude: absolute folders not to walk (the output folder when it lies inside the root).
        other: when given, counts of non-media files per extension (metadata: ``.txt``, ``.json``, ...).
    """
    root = Path(root)
    excluded = {p.resolve() for p in exclude}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (here / d).resolve() not in excluded)
        rel_dir = here.relative_to(root).as_posix()
        images, videos = [], []
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            kind = media_kind(name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if kind == "image":
                images.append(rel)
            elif kind == "video":
                videos.append(rel)
            elif other is not None:
                ext = os.path.splitext(name)[1].lower() or "(none)"
                other[ext] = other.get(ext, 0) + 1
        for rel in videos:
            yield WalkEntry("video", rel)
        if images and frames_as_videos:
            yield WalkEntry("frames", rel_dir, tuple(images))
        else:
            for rel in images:
                yield WalkEntry("image", rel)


def frame_files(folder: Path, root: Path) -> tuple[str, ...]:
    """Frame images of a video folder (its ``crop/`` sub-folder if it has one), relative to ``root``, sorted."""
    for sub in (*FRAME_SUBDIRS, ""):
        d = folder / sub if sub else folder
        if d.is_dir():
            files = sorted(p for p in d.iterdir() if p.is_file() and media_kind(p.name) == "image")
            if files:
                return tuple(p.relative_to(root).as_posix() for p in files)
    return ()


def natural_key(name: str) -> tuple:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


class Reader:
    """A dataset reader: maps the files under a root to `Item` s (or `Skip` s, with the reason).

    Subclasses set the class attributes and implement `scan`; `check` runs before any work and raises
    `IngestError` for a wrong layout or missing option.
    """

    name: str = ""  # registry name (``oulu-npu``)
    title: str = ""  # the dataset's own name (``OULU-NPU``), written to the ``source`` column
    precropped: bool = False  # inputs are face crops already: detection is off unless asked for
    per_entry_source: bool = False  # items carry their own `source` (the dataset of each list entry)
    frames_as_videos: bool = True
    license_note: str = ""
    homepage: str = ""
    layout: str = ""  # one-line description of the expected layout (shown in errors and --list-sources)

    def check(self, root: Path, options: ReaderOptions) -> None:
        """Raise `IngestError` when the root cannot hold this dataset's layout (before any work)."""

    def precropped_for(self, options: ReaderOptions) -> bool:
        """Whether the inputs of a run with these options are face crops already (detection off by default)."""
        return self.precropped

    def scan(self, root: Path, options: ReaderOptions) -> Iterator[Item | Skip]:  # pragma: no cover
        """Stream the items (or skips) of the dataset under ``root``."""
        raise NotImplementedError

    def __init__(self) -> None:
        self.other_files: dict[str, int] = {}
        """Non-media files met by the last walk, per extension (metadata; reported in the summary)."""
        self.default_split_paths: set[str] = set()
        """Items (their ``path``) of the last scan that no folder, column or ``--split`` placed: the reader gave
        them ``test``. Added when the item is yielded; the run counts those that have rows."""

    def walk(self, root: Path, options: ReaderOptions) -> Iterator[WalkEntry]:
        """The media units under ``root`` (see `walk`); non-media files are counted in `other_files`."""
        return walk(root, frames_as_videos=self.frames_as_videos, exclude=options.exclude,
                    other=self.other_files)
