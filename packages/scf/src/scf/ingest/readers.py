"""Readers of the twelve FAS datasets in their delivered layouts (naming rules in `scf.ingest.naming`)."""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from .base import (
    IngestError,
    Item,
    Meta,
    Reader,
    ReaderOptions,
    Skip,
    WalkEntry,
    norm_split,
    split_from_parts,
)
from .lists import HKBU_V2_TITLE, CasiaFasListReader
from .naming import PARSERS, celeba_label_files, celeba_label_key, celeba_typed, read_celeba_spoof_types

logger = logging.getLogger(__name__)

LICENSE_NOTE = ("{title} is distributed by its owners under a licence agreement. This folder holds face crops "
                "derived from it: you may use and share it only as that agreement allows, and only if you hold "
                "the licence yourself. scf ships no images of the dataset.")


def _find_file(root: Path, name: str, depth: int = 3) -> Path | None:
    """A file called ``name`` at most ``depth`` folders below ``root`` (protocol files of a release)."""
    base = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        if len(Path(dirpath).parts) - base >= depth:
            dirnames[:] = []
        if name in filenames:
            return Path(dirpath) / name
    return None


class DatasetReader(Reader):
    """A dataset in its delivered folder layout: every media file (or frame folder) through a naming rule.

    With ``--list`` it reads CASIA-FAS-Dataset lists of that dataset instead (`CasiaFasListReader`), so
    preprocessed copies work too; those point at CASIA-FAS's face crops, so face detection is off in that mode
    unless ``--detect`` is given. ``default_split`` applies when neither a rule nor ``--split`` gives one.
    """

    default_split: str | None = None
    markers: tuple[str, ...] = ()  # folder names (lower case) of which the layout has at least one

    @property
    def parse(self) -> Callable[[PurePosixPath], Meta | None]:
        return PARSERS[self.name]

    def precropped_for(self, options: ReaderOptions) -> bool:
        return bool(options.lists) or self.precropped

    def check(self, root: Path, options: ReaderOptions) -> None:
        if options.lists:
            CasiaFasListReader(self.name).check(root, options)
            return
        if self.markers:
            found = any(d.name.lower() in self.markers for d in _dirs(root, 4))
            if not found:
                raise IngestError(f"{self.title}: {root} does not look like its layout ({self.layout}); "
                                  f"expected a folder named one of {', '.join(self.markers)}")

    def split_for(self, entry: WalkEntry, meta: Meta, options: ReaderOptions) -> str | None:
        return meta.split or options.split or self.default_split

    def item(self, entry: WalkEntry, meta: Meta, split: str) -> Item:
        path = PurePosixPath(entry.path)
        video_id = entry.name_path.as_posix() if entry.kind == "frames" else path.with_suffix("").as_posix()
        return Item(path=entry.path, kind=entry.kind, meta=meta, split=split, video_id=video_id,
                    frames=entry.frames)

    def scan(self, root: Path, options: ReaderOptions) -> Iterator[Item | Skip]:
        if options.lists:
            lister = CasiaFasListReader(self.name)
            yield from lister.scan(root, options)
            return
        for entry in self.walk(root, options):
            skip = self.exclude(entry)
            if skip is not None:
                yield skip
                continue
            meta = self.parse(entry.name_path)
            if meta is None:
                yield Skip(entry.path, "no naming rule", f"name matches no {self.title} rule ({self.layout})")
                continue
            split = self.split_for(entry, meta, options)
            if split is None:
                yield Skip(entry.path, "no split rule", f"{self.title}: pass --split or use the release layout")
                continue
            yield self.item(entry, meta, split)

    def exclude(self, entry: WalkEntry) -> Skip | None:
        """A skip for files the layout holds but the protocol leaves out; None to read the entry."""
        return None


def _dirs(root: Path, depth: int) -> Iterator[Path]:
    base = len(root.parts)
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            yield Path(dirpath) / d
        if len(Path(dirpath).parts) - base + 1 >= depth:
            dirnames[:] = []


class MsuMfsd(DatasetReader):
    name, title = "msu-mfsd", "MSU-MFSD"
    layout = "scene01/{real,attack}/<name>.{mp4,mov} + train_sub_list.txt, test_sub_list.txt"
    homepage = "https://sites.google.com/site/huhanhomepage/download/"
    markers = ("real", "attack", "scene01")

    def check(self, root: Path, options: ReaderOptions) -> None:
        super().check(root, options)
        self.subject_split: dict[str, str] = {}
        if options.lists:
            return
        for split in ("train", "test"):
            found = _find_file(root, f"{split}_sub_list.txt")
            if found is None:
                if options.split:
                    continue
                raise IngestError(f"MSU-MFSD: {split}_sub_list.txt not found under {root} (it ships with the "
                                  "release and gives the train/test subjects); or pass --split")
            for line in found.read_text(encoding="utf-8", errors="replace").split():
                self.subject_split[line.strip().zfill(3)] = split

    def split_for(self, entry: WalkEntry, meta: Meta, options: ReaderOptions) -> str | None:
        return self.subject_split.get(meta.subject_id) or meta.split or options.split


class CasiaFasd(DatasetReader):
    name, title = "casia-fasd", "CASIA-FASD"
    layout = "{train,test}_release/<subject>/<1..8|HR_1..HR_4>.avi"
    markers = ("train_release", "test_release")


class ReplayAttack(DatasetReader):
    name, title = "replay-attack", "Idiap Replay-Attack"
    layout = "{train,devel,test}/{real,attack/{fixed,hand}}/<name>.mov (enroll/ is skipped)"
    homepage = "https://www.idiap.ch/en/scientific-research/data/replayattack"
    markers = ("train", "devel", "test")

    def exclude(self, entry: WalkEntry) -> Skip | None:
        if "enroll" in (p.lower() for p in PurePosixPath(entry.path).parts):
            return Skip(entry.path, "not in the protocol", "enrollment video (face verification only)")
        return None


_OULU_PROTOCOL_LINE = re.compile(r"^([+-]1)\s*,\s*(\d_\d_\d{2}_\d)$")
_OULU_PROTOCOL_FILE = re.compile(r"^(train|dev|test)(?:_([1-6]))?$", re.IGNORECASE)


def is_oulu_protocol_file(path: Path) -> bool:
    """Whether ``path`` is one of OULU-NPU's protocol files (``Protocols/Protocol_N/{Train,Dev,Test}[_k].txt``,
    lines ``+1,1_1_01_1`` / ``-1,1_1_01_2``), judged by its name and first line."""
    if not _OULU_PROTOCOL_FILE.match(path.stem) or not path.is_file():
        return False
    with path.open(encoding="utf-8", errors="replace") as f:
        first = next((line.strip() for line in f if line.strip()), "")
    return bool(_OULU_PROTOCOL_LINE.match(first))


class OuluNpu(DatasetReader):
    """OULU-NPU. Without ``--list`` every video of the release is read, split by its folder. With ``--list``
    OULU-NPU's own protocol files (``Protocols/Protocol_N/Train.txt``, ``Dev.txt``, ``Test.txt``; protocols 3
    and 4 have six folds, ``Train_k.txt`` ...) select the videos of one protocol: the split is the file's
    (Train / Dev / Test), the label its ``+1`` (real) / ``-1`` (attack), checked against the file name's
    access type, and each video is looked up by name in the release folders. CASIA-FAS-Dataset lists of
    OULU-NPU are read as by every dataset reader.
    """

    name, title = "oulu-npu", "OULU-NPU"
    layout = "{Train,Dev,Test}_files/<phone>_<session>_<user>_<access>.avi (+ Protocols/Protocol_N/*.txt)"
    homepage = "https://sites.google.com/site/oulunpudatabase/"
    markers = ("train_files", "dev_files", "test_files")

    def _protocol_lists(self, options: ReaderOptions) -> bool:
        flags = [is_oulu_protocol_file(p) for p in options.lists]
        if any(flags) and not all(flags):
            names = ", ".join(p.name for p, f in zip(options.lists, flags, strict=True) if not f)
            raise IngestError(f"OULU-NPU: {names}: not an OULU-NPU protocol file (lines '+1,1_1_01_1'); do not "
                              "mix protocol files with other lists")
        return bool(flags) and all(flags)

    def precropped_for(self, options: ReaderOptions) -> bool:
        return bool(options.lists) and not self._protocol_lists(options)  # protocol files name raw videos

    def check(self, root: Path, options: ReaderOptions) -> None:
        if options.lists and self._protocol_lists(options):
            DatasetReader.check(self, root, ReaderOptions(split=options.split))  # the release layout
            return
        super().check(root, options)

    def scan(self, root: Path, options: ReaderOptions) -> Iterator[Item | Skip]:
        if not (options.lists and self._protocol_lists(options)):
            yield from super().scan(root, options)
            return
        by_name: dict[str, list[WalkEntry]] = {}
        for entry in self.walk(root, options):
            by_name.setdefault(entry.name_path.stem, []).append(entry)
        seen: set[tuple[str, str]] = set()
        for list_path in options.lists:
            split = norm_split(_OULU_PROTOCOL_FILE.match(list_path.stem)[1])
            text = list_path.read_text(encoding="utf-8", errors="replace")
            for line_no, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                where = f"{list_path.name}:{line_no}"
                m = _OULU_PROTOCOL_LINE.match(line.strip())
                if m is None:
                    yield Skip(line.strip()[:80], "bad list line", f"{where}: expected '+1,<video>' or '-1,<video>'")
                    continue
                video = m[2]
                entries = by_name.get(video, [])
                # the same name can sit in one release folder only; prefer the one of the list's split
                entry = next((e for e in entries if split_from_parts(PurePosixPath(e.path).parts[:-1]) == split),
                             entries[0] if entries else None)
                if entry is None:
                    yield Skip(video, "missing file", f"{where}: no video named {video} under {root}")
                    continue
                meta = self.parse(entry.name_path)
                if meta is None:
                    yield Skip(entry.path, "no naming rule", f"{where}: {video}")
                    continue
                if meta.label != (1 if m[1] == "+1" else 0):
                    yield Skip(entry.path, "list label contradicts the file name",
                               f"{where}: list says {m[1]}, access type says {meta.attack_type}")
                    continue
                if (split, video) not in seen:  # a repeated line reads the video once
                    seen.add((split, video))
                    yield self.item(entry, meta, split)


class Siw(DatasetReader):
    name, title = "siw", "SiW"
    layout = "{Train,Test}/{live,spoof}/<subject>/<subject>-<sensor>-<type>-<medium>-<session>.mov"
    homepage = "http://cvlab.cse.msu.edu/siw-spoof-in-the-wild-database.html"
    markers = ("train", "test")


class RoseYoutu(DatasetReader):
    name, title = "rose-youtu", "Rose-Youtu"
    layout = "[<split>/]<subject>/<code>_..._<subject>_<k>.mp4 (code G, Ps, Pq, Vl, Vm, Mc, Mf, Mu)"
    homepage = "https://rose1.ntu.edu.sg/dataset/faceLivenessDetection/"
    default_split = "test"


_HKBU_V2 = re.compile(r"hkbu.*v2", re.IGNORECASE)


class HkbuMars(DatasetReader):
    """HKBU-MARs. The paper tests on V1+; the only lists of the field (CASIA-FAS's ``HKBUv2_real.txt`` /
    ``HKBUv2_attack.txt``, 12 subjects x 42 videos each) are of V2, a larger release (7 cameras x 6 lights).
    A V2 run writes ``source = HKBU-MARs-V2``: with an ``HKBUv2_*`` list, or when the root (or a folder just
    below it) is named like ``HKBU-MARs-V2`` / ``HKBUv2``; ``--source-name`` sets it otherwise.
    """

    name, title = "hkbu-mars", "HKBU-MARs-V1+"
    layout = "{real,mask}/<subject>/<video>.{avi,mp4} (or live/attack folders; frame folders accepted)"
    homepage = "http://rds.comp.hkbu.edu.hk/mars/"
    default_split = "test"
    markers = ("real", "live", "genuine", "mask", "masks", "attack", "fake", "spoof")

    def check(self, root: Path, options: ReaderOptions) -> None:
        super().check(root, options)
        names = [root.resolve().name, *(d.name for d in _dirs(root, 1))]
        self.v2 = any(_HKBU_V2.search(n) for n in names)

    def item(self, entry: WalkEntry, meta: Meta, split: str) -> Item:
        item = super().item(entry, meta, split)
        if not getattr(self, "v2", False):
            return item
        return Item(path=item.path, kind=item.kind, meta=item.meta, split=item.split, video_id=item.video_id,
                    frames=item.frames, source=HKBU_V2_TITLE)


WMCA_PROTOCOL_COLUMNS = ("filepath", "group")
"""Columns that make a list file WMCA's grand-test protocol file, whatever its suffix."""


def is_wmca_protocol_file(path: Path) -> bool:
    """Whether ``path`` is WMCA's grand-test protocol file, judged by its CSV header (``,client_id,filepath,
    group,label``), not its suffix: the field ships it as ``IDIAP_WMCA_WMCA_Grandtest.txt``."""
    if not path.is_file():
        return False
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        first = next((line for line in f if line.strip()), "")
    header = {c.strip().lower() for c in next(csv.reader([first]), [])}
    return set(WMCA_PROTOCOL_COLUMNS) <= header


class Wmca(DatasetReader):
    """WMCA, RGB stream. The release stores all channels in HDF5 files; ``h5py`` is not a dependency, so the
    colour stream must be extracted first to a video file or a frame folder named like the HDF5 file
    (``<client>_<session>_<presenter>_<type>_<pai>``), keeping the release's folders.

    The grand-test protocol file (``IDIAP_WMCA_WMCA_Grandtest.txt`` or a ``.csv``, recognised by its header
    ``,client_id,filepath,group,label``) given with ``--list`` sets the split (train, dev, eval -> test); its
    ``label`` (``bonafide``/``attack``) is checked against the name's type (0 = bona fide) and a video where
    they disagree is skipped (``list label contradicts the file name``, logged). Protocol 2's WMCA test set
    is the ``eval`` group: 557 videos (115 bona fide, 442 attacks), the same videos as CASIA-FAS's
    ``IDIAP_WMCA_protocol_p1_video_test.txt``. Without the protocol file every video goes to ``test`` (1,679
    in the grand test), with a warning. Other lists are read as CASIA-FAS lists.
    """

    name, title = "wmca", "WMCA"
    layout = "face-station/<date>/<client>_<session>_<presenter>_<type>_<pai>.{mp4,avi} or frame folders"
    homepage = "https://www.idiap.ch/en/scientific-research/data/wmca"
    default_split = "test"

    @staticmethod
    def _partition(options: ReaderOptions) -> tuple[list[Path], tuple[Path, ...]]:
        protocol = [p for p in options.lists if is_wmca_protocol_file(p)]
        return protocol, tuple(p for p in options.lists if p not in protocol)

    def precropped_for(self, options: ReaderOptions) -> bool:
        return bool(self._partition(options)[1])

    def check(self, root: Path, options: ReaderOptions) -> None:
        self.csv_split: dict[str, str] = {}
        self.csv_label: dict[str, str] = {}
        csvs, txts = self._partition(options)
        if txts:
            CasiaFasListReader(self.name).check(root, ReaderOptions(txts, options.label_polarity, options.split))
        elif not csvs and not options.split:
            logger.warning("WMCA: no grand-test protocol file (--list IDIAP_WMCA_WMCA_Grandtest.txt): every video "
                           "goes to the test split (1,679 in the grand test), not Protocol 2's 557 of its eval "
                           "group")
        for path in csvs:
            with path.open(encoding="utf-8", errors="replace", newline="") as f:
                for row in csv.DictReader(f):
                    row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
                    if not row.get("filepath"):
                        continue
                    stem = PurePosixPath(row["filepath"]).name
                    self.csv_split[stem] = {"eval": "test", "devel": "dev"}.get(row["group"], row["group"])
                    self.csv_label[stem] = row.get("label", "").lower()
        hdf5 = next((p for p in root.rglob("*") if p.suffix.lower() in (".hdf5", ".h5")), None)
        if hdf5 is not None and not any(True for _ in self.walk(root, options)):
            raise IngestError(f"WMCA: {root} holds HDF5 files ({hdf5.name}) and no video or frame folder; "
                              "extract the RGB (color) stream first (h5py is not a dependency of scf)")

    def scan(self, root: Path, options: ReaderOptions) -> Iterator[Item | Skip]:
        txts = self._partition(options)[1]
        if txts:
            yield from CasiaFasListReader(self.name).scan(root, ReaderOptions(txts, options.label_polarity,
                                                                               options.split, options.exclude))
            return
        for found in super().scan(root, ReaderOptions((), options.label_polarity, options.split, options.exclude)):
            if isinstance(found, Item):
                stem = PurePosixPath(found.video_id).name
                said = self.csv_label.get(stem, "")
                if said in ("bonafide", "attack") and (said == "bonafide") != (found.meta.label == 1):
                    logger.warning("WMCA: %s: the protocol file says %s, the name's type says %s; skipped",
                                   found.path, said, found.meta.attack_type)
                    yield Skip(found.path, "list label contradicts the file name",
                               f"protocol file: {said}, name: {found.meta.attack_type}")
                    continue
            yield found

    def split_for(self, entry: WalkEntry, meta: Meta, options: ReaderOptions) -> str | None:
        if self.csv_split:  # the protocol file decides; a file it does not list is skipped ("no split rule")
            name = entry.name_path.name if entry.kind == "frames" else entry.name_path.with_suffix("").name
            return self.csv_split.get(name)
        return super().split_for(entry, meta, options)


class SiwMV2(DatasetReader):
    name, title = "siw-m-v2", "SiW-M-V2"
    layout = "<Live|Makeup_*|Mask_*|Partial_*|Paper|Replay>/.../<video>.{mov,mp4}"
    homepage = "http://cvlab.cse.msu.edu/siw-m-spoof-in-the-wild-with-multiple-attacks-database.html"
    default_split = "test"


class CasiaSurf3DMask(DatasetReader):
    name, title = "casia-surf-3dmask", "CASIA-SURF-3DMask"
    layout = "Real/<subject>/<video> and Fake/<subject>/<group>/<video> (video files or frame folders)"
    default_split = "test"
    markers = ("real", "fake")


HIFIMASK_P1_TEST_SUBJECTS = frozenset({"01", "02", "03", "04", "11", "14", "15", "16", "27", "28", "30", "35",
                                       "36", "37", "41", "42", "43", "46", "47", "48", "50", "57", "58", "61"})
"""The 24 test subjects of HiFiMask's protocol 1, as CASIA-FAS-Dataset's
``CASIA_HiFiMask_protocol_CASIA_HiFiMask_p1_video_test.txt`` holds them (17,362 videos: 4,335 live / 13,027 mask)."""


class HiFiMask(DatasetReader):
    """HiFiMask. A folder named by split (``train``/``dev``/``test``) gives the split; otherwise the video's
    subject does: protocol 1's 24 test subjects (`HIFIMASK_P1_TEST_SUBJECTS`) -> ``test``, every other subject
    -> ``train`` (protocol 1's train and dev subjects, which the lists of the field do not tell apart). So a raw
    ingest tests on the 17,362 videos of Protocol 2's HiFiMask set, not on all 75 subjects."""

    name, title = "hifimask", "HiFiMask"
    layout = "[Data/]<skin>_<subject>_<type>_<scene>_<light>_<sensor>/ frames (or .mp4/.avi of that name)"

    def split_for(self, entry: WalkEntry, meta: Meta, options: ReaderOptions) -> str | None:
        if meta.split:
            return meta.split
        return "test" if meta.subject_id in HIFIMASK_P1_TEST_SUBJECTS else "train"


class CelebASpoof(DatasetReader):
    """CelebA-Spoof: still images with per-image face boxes.

    Boxes: ``<id>_BB.txt`` beside each image holds ``x y w h score`` in the coordinates of the image resized to
    224 x 224 (the CelebA-Spoof README's convention; its demo code scales them by ``real_w / 224`` and
    ``real_h / 224``). They are used instead of detection; an image without one is detected.
    Spoof type: entry 40 of the label vector in ``metas/intra_test/{train,test}_label.json`` (keys
    ``Data/<split>/<subject>/<live|spoof>/<id>.jpg``).
    """

    name, title = "celeba-spoof", "CelebA-Spoof"
    layout = "Data/{train,test}/<subject>/{live,spoof}/<id>.{jpg,png} + <id>_BB.txt, metas/intra_test/*.json"
    homepage = "https://github.com/ZhangYuanhan-AI/CelebA-Spoof"
    frames_as_videos = False
    markers = ("live", "spoof")
    root_label_files: tuple[Path, ...] = ()  # metas/intra_test/*_label.json found under --root by `check`

    def check(self, root: Path, options: ReaderOptions) -> None:
        super().check(root, options)
        files = [f for split in ("train", "test") if (f := _find_file(root, f"{split}_label.json", depth=4))]
        self.root_label_files = tuple(files)
        self.spoof_types = read_celeba_spoof_types(files + celeba_label_files(options.celeba_labels))
        if not self.spoof_types:
            logger.warning("CelebA-Spoof: no metas/intra_test/*_label.json under %s: spoof types will be "
                           "'other' (spoof type unknown)", root)

    def item(self, entry: WalkEntry, meta: Meta, split: str) -> Item:
        item = super().item(entry, meta, split)
        rel = PurePosixPath(entry.path)
        meta = celeba_typed(meta, [celeba_label_key(rel), rel.as_posix()], self.spoof_types)
        box = _read_celeba_box(self.root / rel.with_name(rel.stem + "_BB.txt"))
        return Item(path=item.path, kind="image", meta=meta, split=split, video_id=item.video_id,
                    box=box, box_space=224 if box else None)

    def scan(self, root: Path, options: ReaderOptions) -> Iterator[Item | Skip]:
        self.root = root
        if options.lists:  # the list reader types rows from --celeba-labels: add the label files under --root
            options = dataclasses.replace(options, celeba_labels=(*options.celeba_labels, *self.root_label_files))
        yield from super().scan(root, options)


def _read_celeba_box(path: Path) -> tuple[float, float, float, float] | None:
    """``x y w h [score]`` of a CelebA-Spoof ``*_BB.txt`` (224-scaled), or None when absent or malformed."""
    try:
        values = [float(v) for v in path.read_text(encoding="utf-8", errors="replace").split()[:4]]
    except (OSError, ValueError):
        return None
    if len(values) < 4 or values[2] <= 0 or values[3] <= 0:
        return None
    return values[0], values[1], values[2], values[3]


DATASET_READERS: tuple[type[DatasetReader], ...] = (
    CelebASpoof, MsuMfsd, CasiaFasd, ReplayAttack, OuluNpu, Siw, RoseYoutu, HkbuMars, Wmca, SiwMV2,
    CasiaSurf3DMask, HiFiMask,
)
"""The twelve datasets of the paper's Protocols 1 and 2, in the order of the One-to-Eleven table."""

for _cls in DATASET_READERS:
    _cls.license_note = LICENSE_NOTE.format(title=_cls.title)
