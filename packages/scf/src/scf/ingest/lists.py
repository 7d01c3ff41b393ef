"""List-file readers: CASIA-FAS-Dataset video lists and FLIP's MCIO txt lists."""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from scf.schema import LABEL_FAKE, LABEL_REAL
from scf.video import VIDEO_EXTENSIONS

from .base import (
    FRAME_SUBDIRS,
    IngestError,
    Item,
    Meta,
    Reader,
    ReaderOptions,
    Skip,
    frame_files,
    media_kind,
    norm_split,
    split_from_parts,
)
from .naming import (
    FLIP_FRAME_SUFFIX,
    PARSERS,
    celeba_label_files,
    celeba_label_key,
    celeba_typed,
    dataset_of,
    read_celeba_spoof_types,
)

logger = logging.getLogger(__name__)

POLARITIES = ("live0", "live1")
"""``live0``: list label 0 means live (CASIA-FAS ``dg_protocol`` lists); ``live1``: 1 means live."""
_FLIP_CELEB = re.compile(r"^(?P<subject>\d+)_(?P<kind>live|spoof)_(?P<id>\d+)$", re.IGNORECASE)
_LIST_SPLIT = re.compile(r"(?:^|[_\-.])(train|dev|devel|val|test|eval)(?:[_\-.]|$)", re.IGNORECASE)


def split_of_list_file(path: Path) -> str | None:
    """The split a list's file name states (``OULU_NPU_video_dev.txt`` -> dev), or None."""
    m = _LIST_SPLIT.search(path.stem)
    return norm_split(m[1]) if m else None


def unknown_meta(label: int) -> Meta:
    """Meta of an entry whose label is known (from a list) but no naming rule applies."""
    if label == LABEL_REAL:
        return Meta(LABEL_REAL, "live")
    return Meta(LABEL_FAKE, "other", "attack type unknown (no naming rule)")


HKBU_V2_TITLE = "HKBU-MARs-V2"
"""The ``source`` of HKBU-MARs V2 (CASIA-FAS's ``HKBUv2_*.txt`` lists): a different, larger release than the
paper's V1+ (7 cameras x 6 lights per subject), so it is never written as ``HKBU-MARs-V1+``."""


def is_hkbu_v2_list(path: Path) -> bool:
    """Whether a list file is one of HKBU-MARs V2's (``HKBUv2_real.txt``, ``HKBUv2_attack.txt``)."""
    return path.name.lower().startswith("hkbuv2")


def dataset_title(dataset: str | None, list_path: Path | None = None) -> str | None:
    """The ``source`` value of an entry of ``dataset`` (a registry name): the dataset reader's title
    (``MSU-MFSD``, ``OULU-NPU``, ``Idiap Replay-Attack``, ``CASIA-FASD``, ``CelebA-Spoof``...), as the
    protocols name it; ``HKBU-MARs-V2`` for an entry of an ``HKBUv2_*`` list. None for an unknown dataset."""
    if dataset is None:
        return None
    if dataset == "hkbu-mars" and list_path is not None and is_hkbu_v2_list(list_path):
        return HKBU_V2_TITLE
    from .readers import DATASET_READERS  # readers imports this module

    return next((cls.title for cls in DATASET_READERS if cls.name == dataset), None)


def _read_list_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise IngestError(f"cannot read list file {path}: {e.strerror or e}") from e
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def relative_entry(raw: str) -> str | None:
    """A list entry relative to ``--root``, normalised (``a/./b``, ``a/../b``, ``b/`` -> ``b``); None when it
    leaves ``--root`` (``../x``), which the caller skips as ``path outside --root``."""
    rel = posixpath.normpath(raw.strip().strip("/") or ".")
    return None if rel == ".." or rel.startswith("../") else rel


def locate(root: Path, rel: str) -> tuple[str, str, tuple[str, ...]] | None:
    """Find what a list entry points at: ``(kind, path, frames)``, or None when nothing is there.

    An entry is an image or video file, a video folder (frames in it or in its ``crop/`` sub-folder), or a
    video name without extension (``.avi``, ``.mov``, ``.mp4``... tried in turn).
    """
    target = root / rel
    if target.is_file():
        kind = media_kind(target.name)
        return (kind, rel, ()) if kind else None
    if target.is_dir():
        frames = frame_files(target, root)
        if frames:
            return "frames", PurePosixPath(frames[0]).parent.as_posix(), frames
        return None
    for ext in VIDEO_EXTENSIONS + tuple(e.upper() for e in VIDEO_EXTENSIONS):
        candidate = target.with_name(target.name + ext)
        if candidate.is_file():
            return "video", f"{rel}{ext}", ()
    return None


def _video_id(kind: str, path: str) -> str:
    p = PurePosixPath(path)
    if kind == "frames":
        return (p.parent if p.name.lower() in FRAME_SUBDIRS else p).as_posix()
    return p.with_suffix("").as_posix()


class CasiaFasListReader(Reader):
    """CASIA-FAS-Dataset lists: ``<relative path> <label>`` per line (liuajian/CASIA-FAS-Dataset).

    Options: ``lists`` (required), ``label_polarity`` (required: ``live0`` or ``live1``; the lists are not
    consistent across liuajian/CASIA-FAS-Dataset's ``dg_protocol`` files), ``split`` (else the list file
    name's ``train``/``dev``/``test``, else the naming rule's, else test). The dataset of each entry is
    its first path component (``OULU_NPU/``, ``SiW/``...); its naming rule gives attack type and subject,
    and an entry whose list label contradicts its name is skipped (reason ``list label contradicts the
    file name``). A list whose every labelled entry contradicts
    stops the run before any work: the polarity option is wrong for that file. ``source`` is the title of
    each entry's dataset (`dataset_title`; ``HKBUv2_*`` lists -> ``HKBU-MARs-V2``), so one run over several
    datasets' lists gives the names the protocols use; ``--source-name`` overrides it.
    """

    name = "casia-fas-list"
    title = "CASIA-FAS lists"
    precropped = True
    per_entry_source = True
    layout = "<root>/<list path> with frames in <path>/crop/*.png (or <path>/*.png), a video file, or an image"
    license_note = "the licence of each dataset the lists point into"

    def __init__(self, dataset: str | None = None) -> None:
        super().__init__()
        self.dataset = dataset  # restrict to one dataset (the dataset readers' --list mode)

    def _parser(self, rel: PurePosixPath):  # noqa: ANN202
        name = self.dataset or dataset_of(rel)
        return PARSERS.get(name) if name else None

    def _label(self, raw: str, polarity: str) -> int | None:
        if raw not in ("0", "1"):
            return None
        live = (raw == "0") if polarity == "live0" else (raw == "1")
        return LABEL_REAL if live else LABEL_FAKE

    def check(self, root: Path, options: ReaderOptions) -> None:
        if not options.lists:
            raise IngestError(f"{self.name}: give the list file(s) with --list")
        if options.label_polarity not in POLARITIES:
            raise IngestError(f"{self.name}: --label-polarity is required (live0: label 0 is live, as in most "
                              "CASIA-FAS lists; live1: label 1 is live); the lists are not consistent")
        for path in options.lists:
            if not path.is_file():
                raise IngestError(f"list file not found: {path}")
            checked = contradicting = 0
            for _, line in _read_list_lines(path):
                parts = line.split()
                if len(parts) != 2 or parts[1] not in ("0", "1"):
                    continue
                parser = self._parser(PurePosixPath(parts[0]))
                meta = parser(PurePosixPath(parts[0])) if parser else None
                if meta is None:
                    continue
                checked += 1
                contradicting += meta.label != self._label(parts[1], options.label_polarity)
            if checked and contradicting == checked:
                other = POLARITIES[1 - POLARITIES.index(options.label_polarity)]
                raise IngestError(f"{path}: every one of {checked} labelled entries contradicts its file name "
                                  f"under --label-polarity {options.label_polarity}; this list uses {other}")

    def scan(self, root: Path, options: ReaderOptions) -> Iterator[Item | Skip]:
        seen: set[str] = set()
        celeba_types = read_celeba_spoof_types(celeba_label_files(options.celeba_labels))
        for list_path in options.lists:
            list_split = split_of_list_file(list_path)
            for line_no, line in _read_list_lines(list_path):
                parts = line.split()
                where = f"{list_path.name}:{line_no}"
                if len(parts) != 2:
                    yield Skip(where, "malformed list line", line[:200])
                    continue
                rel, raw = relative_entry(parts[0]), parts[1]
                if rel is None:
                    yield Skip(where, "path outside --root", f"{parts[0]} leaves {root}")
                    continue
                if rel in seen:
                    continue  # the same entry in two lists (a video in several protocol files)
                seen.add(rel)
                label = self._label(raw, options.label_polarity or "")
                if label is None:
                    yield Skip(rel, "malformed list line", f"{where}: label {raw!r} is not 0 or 1")
                    continue
                found = locate(root, rel)
                if found is None:
                    yield Skip(rel, "missing file", f"{where}: nothing at {root / rel}")
                    continue
                kind, path, frames = found
                parser = self._parser(PurePosixPath(rel))
                meta = parser(PurePosixPath(rel)) if parser else None
                if meta is None:
                    meta = unknown_meta(label)
                elif meta.label != label:
                    yield Skip(path, "list label contradicts the file name",
                               f"{where}: list label {raw} ({'real' if label else 'fake'}), name says "
                               f"{meta.attack_type}")
                    continue
                split = options.split or list_split or meta.split or "test"
                dataset = self.dataset or dataset_of(PurePosixPath(rel))
                if dataset == "celeba-spoof":  # the spoof type is in CelebA-Spoof's label files, not the path
                    # the entry names the image (or its crop folder)
                    meta = celeba_typed(meta, [celeba_label_key(PurePosixPath(rel))], celeba_types)
                source = dataset_title(dataset, list_path)
                yield Item(path=path, kind=kind, meta=meta, split=split, video_id=_video_id(kind, path),
                           frames=frames, source=source)


class FlipListReader(Reader):
    """FLIP's MCIO data: ``<ds>/<train|test>/<real|fake>/<video>_frame0.png`` crops (koushiksrivats/FLIP).

    ``--root`` is FLIP's ``data/MCIO/frame`` folder. With ``--list`` (the ``data/MCIO/txt/*.txt`` files), the
    videos of the lists are read (each line names ``_frame0.png``; ``_frame1.png`` is implied: FLIP's lists
    hold one line per video); without, every ``*_frame<N>.png`` under the root is. Label: the
    ``real``/``fake`` folder (and the list name's ``_real_``/``_fake_``, which must agree). Attack type and
    subject: the dataset's naming rule (``casia``, ``msu``, ``replay``, ``oulu``). Split: the
    ``train``/``test`` folder (the dataset's own split; FLIP's train lists are the union of both, so
    several lists naming a video read it once). ``frame_index``
    is the crop number N (FLIP took frames 6 and 6 + n/2 of the video; the video frame number is not kept in
    the crops). The crops are faces: no detection unless asked for. ``source`` is the title of each entry's
    dataset (``CASIA-FASD``, ``Idiap Replay-Attack``, ``MSU-MFSD``, ``OULU-NPU``, ``CelebA-Spoof``), unless
    ``--source-name`` is given.

    CelebA-Spoof (FLIP's fourth training source, ``celeb_{real,fake}_train.txt``): entries
    ``celeb/<real|fake>/<subject>_<live|spoof>_<id>.jpg``, one image each: ``frame_index`` 0, split
    ``train`` (FLIP trains on them only), attack type ``other`` (the lists carry no spoof type). The label is
    the folder's, as in FLIP's training: FLIP's ``celeb_fake_train.txt`` holds a few ``*_live_*`` names in
    ``celeb/fake/`` (``997_live_125049.jpg``), which FLIP trained as attacks; such a row is kept as an attack
    and its ``attack_detail`` says that the name says live.
    """

    name = "flip-mcio"
    title = "FLIP MCIO"
    precropped = True
    per_entry_source = True
    frames_as_videos = False
    layout = "<root>/<ds>/<train|test>/<real|fake>/<video>_frame<N>.png  (FLIP data/MCIO/frame)"
    license_note = "the licences of CASIA-FASD, Idiap Replay-Attack, MSU-MFSD and OULU-NPU"

    def check(self, root: Path, options: ReaderOptions) -> None:
        for path in options.lists:
            if not path.is_file():
                raise IngestError(f"list file not found: {path}")

    def _item(self, rel: str) -> Item | Skip:
        p = PurePosixPath(rel)
        m = FLIP_FRAME_SUFFIX.search(p.stem)
        lowered = [x.lower() for x in p.parts[:-1]]
        label_dir = next((x for x in lowered if x in ("real", "fake")), None)
        if dataset_of(p) == "celeba-spoof" and label_dir is not None:
            return self._celeb_item(rel, label_dir)
        if m is None or label_dir is None:
            return Skip(rel, "no naming rule", "expected <ds>/<split>/<real|fake>/<video>_frame<N>.png")
        label = LABEL_REAL if label_dir == "real" else LABEL_FAKE
        dataset = dataset_of(p)
        parser = PARSERS.get(dataset) if dataset else None
        meta = parser(p) if parser else None
        if meta is None:
            meta = unknown_meta(label)
        elif meta.label != label:
            return Skip(rel, "folder label contradicts the file name", f"folder {label_dir}, name says "
                        f"{meta.attack_type}")
        split = split_from_parts(p.parts[:-1]) or meta.split or "test"
        video_id = FLIP_FRAME_SUFFIX.sub("", p.with_suffix("").as_posix())
        return Item(path=rel, kind="image", meta=meta, split=split, video_id=video_id, frame_index=int(m[1]),
                    source=dataset_title(dataset))

    def _celeb_item(self, rel: str, label_dir: str) -> Item | Skip:
        """An entry of FLIP's CelebA-Spoof lists (see the class docstring: the folder's label wins)."""
        p = PurePosixPath(rel)
        m = _FLIP_CELEB.match(p.stem)
        if m is None:
            return Skip(rel, "no naming rule", "expected celeb/<real|fake>/<subject>_<live|spoof>_<id>.jpg")
        if label_dir == "real":
            if m["kind"].lower() != "live":
                return Skip(rel, "folder label contradicts the file name", "folder real, name says spoof")
            meta = Meta(LABEL_REAL, "live", "", m["subject"], "train")
        else:
            detail = ("CelebA-Spoof via FLIP's list: spoof type unknown" if m["kind"].lower() == "spoof" else
                      "CelebA-Spoof via FLIP's list: the name says live, FLIP lists it as fake (kept as fake)")
            meta = Meta(LABEL_FAKE, "other", detail, m["subject"], "train")
            if m["kind"].lower() == "spoof":  # FLIP's crops keep CelebA-Spoof's subject and image id
                keys = [f"Data/{split}/{m['subject']}/spoof/{m['id']}" for split in ("train", "test")]
                meta = celeba_typed(meta, keys, getattr(self, "celeba_types", {}))
        return Item(path=rel, kind="image", meta=meta, split="train", video_id=p.with_suffix("").as_posix(),
                    frame_index=0, source=dataset_title("celeba-spoof"))

    def scan(self, root: Path, options: ReaderOptions) -> Iterator[Item | Skip]:
        self.celeba_types = read_celeba_spoof_types(celeba_label_files(options.celeba_labels))
        if not options.lists:
            for entry in self.walk(root, options):
                if entry.kind != "image":
                    yield Skip(entry.path, "no naming rule", "FLIP crops are images")
                    continue
                yield self._item(entry.path)
            return
        seen: set[str] = set()
        for list_path in options.lists:
            list_label = "real" if "_real" in list_path.stem else "fake" if "_fake" in list_path.stem else None
            for line_no, line in _read_list_lines(list_path):
                where = f"{list_path.name}:{line_no}"
                rel = relative_entry(line.split()[0])
                if rel is None:
                    yield Skip(where, "path outside --root", f"{line.split()[0]} leaves {root}")
                    continue
                if list_label and f"/{list_label}/" not in f"/{rel}":
                    yield Skip(rel, "list label contradicts the file name", f"{where}: list is {list_label}")
                    continue
                m = FLIP_FRAME_SUFFIX.search(PurePosixPath(rel).stem)
                frames = [rel]
                if m and m[1] == "0":  # FLIP lists name frame0; frame1 is the second crop of the video
                    frames.append(rel.replace("_frame0.", "_frame1.", 1))
                for frame in frames:
                    if frame in seen:
                        continue
                    seen.add(frame)
                    if not (root / frame).is_file():
                        yield Skip(frame, "missing file", f"{where}: nothing at {root / frame}")
                        continue
                    yield self._item(frame)
