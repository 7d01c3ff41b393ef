"""Video exclusion lists (``ifas-eval --exclude-videos FILE``): leave listed videos out of every test set.

The use case is FLIP's MCIO test lists: ``<ds>_{real,fake}_test.txt`` hold the whole target dataset (its
``train/`` and ``test/`` folders) minus FLIP's 5-shot videos ``<ds>_{real,fake}_shot.txt`` (10 real and
10 fake videos per dataset). The built-in ``mcio`` protocol tests the target's train + test splits; passing
the target's two ``*_shot.txt`` files removes exactly those 20 videos, giving FLIP's test set.

File format: one entry per line, either FLIP's ``<ds>/<split>/<real|fake>/<video>_frame0.png`` or a plain
video id (the benchmark's ``video_id`` column). Empty lines and lines starting with ``#`` are ignored; only
the first whitespace-separated field of a line is read (so ``<path> <label>`` lists work too).

Matching is on the benchmark's ``video_id`` column after the same normalisation on both sides
(`normalize_video_key`): backslashes become ``/``, a leading ``./`` or ``/`` is dropped, a media extension
and FLIP's ``_frameN`` suffix are removed, and the first component of the entry (FLIP's dataset folder,
``msu``/``MSU``) is compared without case. An entry matches a video whose id *ends with* it, component by
component, so ``msu/train/real/v`` matches the video id ``msu/train/real/v`` (written by ``scf ingest
--source flip-mcio``) and also ``frame/msu/train/real/v`` (the same crops ingested from one folder up).
Corpora ingested from the raw datasets have other video ids: nothing matches, and ``ifas-eval`` says so.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_MEDIA_SUFFIX = re.compile(r"\.(png|jpe?g|bmp|webp|tiff?|gif|avi|mov|mp4|mkv|m4v|wmv|3gp)$", re.IGNORECASE)
_FRAME_SUFFIX = re.compile(r"_frame\d+$")

Key = tuple[str, ...]


def normalize_video_key(text: str) -> Key:
    """The comparable form of a list entry or a ``video_id``: its path components, normalised.

    ``./MSU/train/real/v_frame0.png`` -> ``("msu", "train", "real", "v")``. The first component is
    lower-cased (FLIP's dataset folder; case differs between copies); the others are kept as they are.
    """
    parts = [p for p in text.strip().replace("\\", "/").split("/") if p not in ("", ".")]  # drops ./ and /
    if not parts:
        return ()
    parts[-1] = _FRAME_SUFFIX.sub("", _MEDIA_SUFFIX.sub("", parts[-1]))
    if not parts[-1]:  # the entry was only a suffix (``_frame0.png``)
        parts.pop()
    return (parts[0].lower(), *parts[1:]) if parts else ()


def _suffixes(key: Key) -> Iterable[Key]:
    """Every trailing part of ``key`` with its own first component lower-cased (to look entries up)."""
    for i in range(len(key)):
        tail = key[i:]
        yield (tail[0].lower(), *tail[1:])


@dataclass(frozen=True)
class ExclusionList:
    """The videos of one ``--exclude-videos`` file.

    Attributes:
        label: how the file is named in tables and messages (its file name, or the path when two files share
            a name).
        path: the file as given.
        keys: the normalised entries (`normalize_video_key`).
    """

    label: str
    path: str
    keys: frozenset[Key]

    def matches(self, video_ids: Iterable[str]) -> set[str]:
        """The video ids (as given) that an entry of this list names."""
        found = set()
        for vid in set(video_ids):
            if any(s in self.keys for s in _suffixes(normalize_video_key(vid))):
                found.add(vid)
        return found


def read_exclusion_file(path: str | Path, label: str | None = None) -> ExclusionList:
    """Read one exclusion file (module docstring).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no entry, or cannot be read as text (the message names the file).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"--exclude-videos {path}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise ValueError(f"--exclude-videos {path}: not a readable text file ({e.__class__.__name__})") from None
    keys = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key = normalize_video_key(line.split()[0])
        if key:
            keys.add(key)
    if not keys:
        raise ValueError(f"--exclude-videos {path}: no video entries (one <ds>/<split>/<real|fake>/<video>_frame0.png "
                         "or video id per line)")
    return ExclusionList(label or p.name, str(path), frozenset(keys))


def read_exclusion_files(paths: Sequence[str | Path]) -> list[ExclusionList]:
    """Read several exclusion files; files sharing a file name are labelled by their full path."""
    names = [Path(p).name for p in paths]
    return [read_exclusion_file(p, Path(p).name if names.count(Path(p).name) == 1 else str(p)) for p in paths]


def exclusion_fingerprint(lists: Sequence[ExclusionList]) -> str:
    """A short hash of the union of the lists' entries (keeps score files of different exclusions apart)."""
    h = hashlib.sha1()
    for key in sorted({k for lst in lists for k in lst.keys}):
        h.update("/".join(key).encode())
        h.update(b"\n")
    return h.hexdigest()[:8]


def exclude_videos(video_ids: Sequence[str], lists: Sequence[ExclusionList],
                   ) -> tuple[list[int], dict[str, int]]:
    """Which rows to keep, and how many distinct videos each list removed.

    Args:
        video_ids: the ``video_id`` of every row of a test set.
        lists: the exclusion lists.

    Returns:
        ``(kept row indices, {list label: number of videos of the test set it names})``. A video named by
        two lists counts for both.
    """
    removed: set[str] = set()
    counts: dict[str, int] = {}
    for lst in lists:
        hit = lst.matches(video_ids)
        counts[lst.label] = len(hit)
        removed |= hit
    keep = [i for i, v in enumerate(video_ids) if v not in removed]
    return keep, counts
