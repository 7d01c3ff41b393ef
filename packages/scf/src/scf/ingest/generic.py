"""Generic readers: an image folder with ``real``/``fake`` (or per-attack-type) sub-folders, and a CSV manifest."""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from scf.schema import ATTACK_TYPES, LABEL_FAKE, LABEL_REAL

from .base import IngestError, Item, Meta, Reader, ReaderOptions, Skip, norm_split
from .lists import locate, relative_entry

LIVE_NAMES = {"real", "live", "bonafide", "bona_fide", "bona-fide", "genuine"}
FAKE_NAMES = {"fake", "spoof", "attack", "attacks"}
logger = logging.getLogger(__name__)
_TYPE_NAMES = {t: t for t in ATTACK_TYPES if t != "live"} | {"photo": "print", "paper": "print",
                                                              "video": "replay", "screen": "replay"}


def _class_meta(folder: str) -> Meta | None:
    low = folder.lower()
    if low in LIVE_NAMES:
        return Meta(LABEL_REAL, "live")
    if low in FAKE_NAMES:
        return Meta(LABEL_FAKE, "other", "fake (attack type not given)")
    if low in _TYPE_NAMES:
        return Meta(LABEL_FAKE, _TYPE_NAMES[low], folder)
    return None


class ImageFolderReader(Reader):
    """``[<split>/]<class>/.../<file>``: class folders ``real``/``live``/``bonafide`` (real) and ``fake``/
    ``spoof``/``attack`` (attack type ``other``), or one folder per attack type (``print``, ``replay``,
    ``mask``, ``mannequin``, ``makeup``, ``other``; ``photo``/``paper`` -> print, ``video``/``screen`` ->
    replay). An optional first level ``train``/``dev``/``val``/``test`` gives the split, else ``--split``
    (default test). Images are items; videos under the class folders are sampled like any video. Subject:
    unknown (empty).
    """

    name, title = "image-folder", "image folder"
    frames_as_videos = False
    layout = "[<split>/]{real,fake | print,replay,mask,...}/<files>"
    license_note = "the licence of the images' owners"

    def check(self, root: Path, options: ReaderOptions) -> None:
        names = {p.name.lower() for p in root.iterdir() if p.is_dir()}
        inner = {q.name.lower() for p in root.iterdir() if p.is_dir() and norm_split(p.name)
                 for q in p.iterdir() if q.is_dir()}
        if not any(_class_meta(n) for n in names | inner):
            raise IngestError(f"image-folder: {root} has no real/fake (or attack-type) sub-folder "
                              f"(expected {self.layout})")

    def scan(self, root: Path, options: ReaderOptions) -> Iterator[Item | Skip]:
        for entry in self.walk(root, options):
            parts = PurePosixPath(entry.path).parts
            split = norm_split(parts[0]) if len(parts) > 1 else None
            rest = parts[1:] if split else parts
            meta = _class_meta(rest[0]) if len(rest) > 1 else None
            if meta is None:
                yield Skip(entry.path, "no naming rule", f"not below a class folder ({self.layout})")
                continue
            video_id = PurePosixPath(entry.path).with_suffix("").as_posix()
            if not split and not options.split:
                self.default_split_paths.add(entry.path)  # reported in the summary: training needs a train split
            yield Item(path=entry.path, kind=entry.kind, meta=meta, split=split or options.split or "test",
                       video_id=video_id)


MANIFEST_COLUMNS = ("path", "label", "attack_type", "attack_detail", "subject_id", "video_id", "split", "frame_index")


def parse_label(raw: str) -> int | None:
    """A manifest label: ``1``/``real``/``live``/``bonafide`` -> 1, ``0``/``fake``/``spoof``/``attack`` -> 0."""
    low = raw.strip().lower()
    if low == "1" or low in LIVE_NAMES:
        return LABEL_REAL
    if low == "0" or low in FAKE_NAMES:
        return LABEL_FAKE
    return None


FRAME_INDEX_MAX = 2**31 - 1  # the frame_index column is int32 (scf.schema)
_FRAME_INDEX = re.compile(r"([0-9]+)(?:\.0*)?")


def parse_frame_index(raw: str) -> int | None:
    """A manifest ``frame_index``: ASCII digits, or an integral float such as ``3.0`` (what pandas writes for an
    integer column that has empty cells), 0 to 2147483647 (int32); empty -> 0; anything else -> None."""
    raw = raw.strip()
    if not raw:
        return 0
    m = _FRAME_INDEX.fullmatch(raw)
    if m is None or int(m[1]) > FRAME_INDEX_MAX:
        return None
    return int(m[1])


def _under_root(root: Path, absolute: str) -> str | None:
    """An absolute manifest path as a path relative to ``root`` (as written, else with links resolved)."""
    for base, target in ((Path(os.path.abspath(root)), Path(os.path.normpath(absolute))),
                         (root.resolve(), Path(absolute).resolve())):
        try:
            return target.relative_to(base).as_posix()
        except ValueError:
            continue
    return None


class CsvManifestReader(Reader):
    """A CSV manifest (``--list manifest.csv``) with a header row. Columns: ``path`` and ``label`` required;
    ``attack_type``, ``attack_detail``, ``subject_id``, ``video_id``, ``split``, ``frame_index`` (or
    ``frame``) optional; others ignored.

    ``path`` is relative to ``--root``, or absolute (an image, a video, or a folder of frames); an absolute path
    must lie under ``--root`` (it is stored relative to it, so ``path`` stays portable), else the row is skipped
    (``path outside --root``: give a ``--root`` that holds every file, ``/`` at worst). The file may start with a
    UTF-8 byte-order mark (Excel's "CSV UTF-8"). ``label`` uses the toolkit's
    polarity, 1 = real (or the words real/live/bonafide and fake/spoof/attack). ``attack_type`` must be one
    of `scf.schema.ATTACK_TYPES` (default: live for reals, other for fakes). ``split`` defaults to
    ``--split``, else test. ``frame_index`` is the video frame an image was taken from (default 0), so the
    frames of one video (same ``video_id``) keep their order: an integer 0..2147483647 (``3.0``, as pandas
    writes an integer column with empty cells, is 3); a video file or frame folder row is sampled by
    ``--frames`` and its own frame numbers are used instead. Without a ``frame_index`` column, a ``frame``
    column is read as one only if every value in it is such an integer; otherwise it is someone else's column
    (frame file names, timestamps) and is ignored with a warning. A row with a bad value is skipped with the row
    number and reason.
    """

    name, title = "csv", "CSV manifest"
    layout = ("--list manifest.csv with columns path,label[,attack_type,attack_detail,subject_id,video_id,split,"
              "frame_index]")
    license_note = "the licence of the images' owners"

    def check(self, root: Path, options: ReaderOptions) -> None:
        if len(options.lists) != 1:
            raise IngestError("csv: give exactly one manifest with --list")
        path = options.lists[0]
        if not path.is_file():
            raise IngestError(f"manifest not found: {path}")
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: a BOM (Excel) is not part of the header
            header = [h.strip() for h in next(csv.reader(f), [])]
        missing = [c for c in ("path", "label") if c not in header]
        if missing:
            raise IngestError(f"{path}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")

    @staticmethod
    def _frame_column(path: Path, header: list[str]) -> str | None:
        """``frame_index``; else ``frame`` when every value of it is a frame number (a ``frame`` column of file
        names or timestamps is someone else's column: ignored, with a warning); else None."""
        if "frame_index" in header:
            return "frame_index"
        if "frame" not in header:
            return None
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = csv.DictReader(f)
            rows.fieldnames = [h.strip() for h in rows.fieldnames or []]
            for row_no, row in enumerate(rows, start=2):
                if parse_frame_index(row.get("frame") or "") is None:
                    logger.warning("%s:%d: the 'frame' column is ignored: %r is not a frame number (0..%d); name "
                                   "the column frame_index to have such rows skipped instead", path, row_no,
                                   row.get("frame"), FRAME_INDEX_MAX)
                    return None
        return "frame"

    def scan(self, root: Path, options: ReaderOptions) -> Iterator[Item | Skip]:
        path = options.lists[0]
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = csv.DictReader(f)
            rows.fieldnames = [h.strip() for h in rows.fieldnames or []]
            frame_column = self._frame_column(path, rows.fieldnames)
            for row_no, row in enumerate(rows, start=2):
                where = f"{path.name}:{row_no}"
                raw = (row.get("path") or "").strip()
                if not raw:
                    yield Skip(where, "malformed manifest row", "empty path")
                    continue
                rel = _under_root(root, raw) if os.path.isabs(raw) else relative_entry(raw)
                if rel is None:
                    yield Skip(where, "path outside --root", f"{raw} is not under {root}: give --root a folder that "
                                                             "holds every file of the manifest")
                    continue
                label = parse_label(row.get("label") or "")
                if label is None:
                    yield Skip(where, "malformed manifest row", f"{rel}: label {row.get('label')!r}")
                    continue
                attack = (row.get("attack_type") or "").strip().lower() or ("live" if label else "other")
                try:
                    meta = Meta(label, attack, (row.get("attack_detail") or "").strip(),
                                (row.get("subject_id") or "").strip())
                except ValueError as e:
                    yield Skip(where, "malformed manifest row", f"{rel}: {e}")
                    continue
                raw_split = (row.get("split") or "").strip()
                split = norm_split(raw_split) if raw_split else (options.split or "test")
                if split is None:
                    yield Skip(where, "malformed manifest row", f"{rel}: split {raw_split!r}")
                    continue
                raw_frame = (row.get(frame_column) or "") if frame_column else ""
                frame_index = parse_frame_index(raw_frame)
                if frame_index is None:
                    yield Skip(where, "malformed manifest row",
                               f"{rel}: {frame_column} {raw_frame.strip()!r} (an integer 0..{FRAME_INDEX_MAX})")
                    continue
                found = locate(root, rel)
                if found is None:
                    yield Skip(rel, "missing file", f"{where}: nothing at {root / rel}")
                    continue
                kind, rel_found, frames = found
                if not raw_split and not options.split:
                    self.default_split_paths.add(rel_found)
                video_id = (row.get("video_id") or "").strip() or PurePosixPath(rel).with_suffix("").as_posix()
                yield Item(path=rel_found, kind=kind, meta=meta, split=split, video_id=video_id, frames=frames,
                           frame_index=frame_index if kind == "image" else None)
