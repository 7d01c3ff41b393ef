"""The ingest run: stream a reader's items through worker processes into resumable parquet shards.

`run_ingest(IngestConfig(...))` is what ``scf ingest`` calls. It

1. checks the source, the root and the reader's layout before any work (`IngestError`);
2. streams the reader's items (never the whole dataset in memory) to ``workers`` processes (in-process when
   ``workers == 1``), at most a few items in flight per worker;
3. writes rows through `scf.shards.ShardWriter` keyed by ``path`` (``<file>`` for images and frame files,
   ``<video file>#<frame>`` for video frames) and skips through `scf.shards.SkipLog`, so a rerun after a kill
   redoes nothing that reached a shard and duplicates no row;
4. recounts the whole folder from its shards and skip log, checks that every file seen is accounted for
   (rows or skips), and writes ``ingest_summary.json``, ``ingest_config.json`` and the dataset card.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from scf import faces, schema
from scf.shards import (
    SKIPPED_FILE,
    WRITE_ERRNOS,
    ShardWriter,
    SkipLog,
    write_error_message,
    write_text_atomic,
)

from .base import IngestError, Item, ReaderOptions, Skip
from .lists import POLARITIES
from .registry import canonical_name, get_reader
from .worker import PERMISSION_DENIED, READ_ERROR, Outcome, WorkSettings, init_worker, process

logger = logging.getLogger(__name__)

CONFIG_FILE = "ingest_config.json"
SUMMARY_FILE = "ingest_summary.json"
MISSING_FILE = "missing file"
"""The skip reason of a list entry (manifest row) whose file is not under ``--root``: not kept from one run to
the next (the scan finds it again; a file that is back is ingested), and never logged for a file that has rows
(those rows are stale: reported, or dropped by ``--prune-missing``)."""
PER_ENTRY_SOURCE = "dataset of each entry"
"""What ``ingest_config.json`` records as ``source_name`` when the reader writes each entry's dataset title
(``flip-mcio``, ``casia-fas-list``) and no ``--source-name`` is given."""
CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""What ``--config`` accepts: a Hub config name, which is also the folder under ``--out`` (never ``..`` or a path)."""
_IMAGE_SETTINGS = ("source", "frames", "detect", "margin", "size", "neighbours", "image_format")
_ROW_SETTINGS = ("source_name", "split", "lists", "label_polarity", "celeba_labels")
"""Settings that decide the `source` and `split` columns and which items exist: a resume must keep them too
(rows already written keep the old values). An ``ingest_config.json`` written before they were recorded
lacks ``source_name``; such a file is still resumed, comparing what it has. The *contents* of the ``--list``
files are compared too, by their SHA-256 (``list_sha256``; absent from older files, which still resume)."""
_FLAGS = {"source": "--source", "frames": "--frames", "detect": "--detect/--no-detect", "margin": "--margin",
          "size": "--size", "neighbours": "--neighbours", "image_format": "--image-format",
          "source_name": "--source-name", "split": "--split", "lists": "--list", "label_polarity": "--label-polarity",
          "celeba_labels": "--celeba-labels"}


@dataclass(frozen=True)
class IngestConfig:
    """Settings of one ``scf ingest`` run."""

    source: str  # registry name or alias (scf ingest --list-sources)
    root: Path  # the dataset as the user holds it
    out: Path  # dataset folder; with config_name, the parent folder of several sources
    config_name: str | None = None  # write to out/<config_name>/ and list it in out/README.md
    lists: tuple[Path, ...] = ()  # list / protocol / manifest files
    label_polarity: str | None = None  # live0 | live1 (CASIA-FAS lists)
    split: str | None = None  # split for items no rule gives one
    frames: str = "flip"  # "flip" or a number k of equidistant frames
    detect: bool | None = None  # None: on, except for readers of pre-cropped faces
    margin: float = faces.DEFAULT_MARGIN
    size: int = faces.DEFAULT_SIZE
    neighbours: int = 3
    workers: int = 1
    shard_size: int = 1000
    image_format: str = "png"
    source_name: str | None = None  # value of the `source` column; default the dataset's title
    celeba_labels: tuple[Path, ...] = ()  # CelebA-Spoof label files / folders: spoof types of list entries
    prune_missing: bool = False  # drop rows of files this scan no longer finds (moved, renamed, deleted)

    def __post_init__(self) -> None:
        if self.frames != "flip" and not (self.frames.isdigit() and int(self.frames) >= 1):
            raise IngestError(f"--frames must be 'flip' or a positive number of frames, got {self.frames!r}")
        if self.margin < 0:
            raise IngestError(f"--margin must be >= 0, got {self.margin}")
        if not 16 <= self.size <= 2048:
            raise IngestError(f"--size must be between 16 and 2048, got {self.size}")
        if self.workers < 1 or self.shard_size < 1 or self.neighbours < 0:
            raise IngestError("--workers and --shard-size must be >= 1, --neighbours >= 0")
        if self.image_format not in ("png", "jpeg"):
            raise IngestError(f"--image-format must be png or jpeg, got {self.image_format!r}")
        if self.label_polarity is not None and self.label_polarity not in POLARITIES:
            raise IngestError(f"--label-polarity must be one of {', '.join(POLARITIES)}")
        if self.split is not None and self.split not in schema.SPLITS:
            raise IngestError(f"--split must be one of {', '.join(schema.SPLITS)}")
        if self.config_name is not None and not CONFIG_NAME.fullmatch(self.config_name):
            raise IngestError(f"--config must be a plain config name (letters, digits, '_', '.', '-'; starting with "
                              f"a letter or digit; no '/'), got {self.config_name!r}: it names the folder "
                              "OUT/<CONFIG> and the Hub dataset config")

    @property
    def dataset_dir(self) -> Path:
        return self.out / self.config_name if self.config_name else self.out


@dataclass
class IngestSummary:
    """Counts of a finished ingest, over the whole output folder (earlier interrupted runs included)."""

    source: str
    title: str
    splits: dict[str, dict[str, Any]]  # split -> {"rows", "real", "fake", "videos", "attack_types": {...}}
    skipped: dict[str, int]  # reason -> items
    files_seen: int
    files_with_rows: int
    files_skipped: int
    unaccounted: list[str]
    rows_total: int
    skipped_total: int
    rows_this_run: int
    other_files: dict[str, int] = field(default_factory=dict)
    stale_rows: int = 0  # rows (of earlier runs) whose file this run's scan no longer found; 0 after pruning
    stale_files: list[str] = field(default_factory=list)  # those files (at most 100)
    pruned_rows: int = 0  # rows dropped by prune_missing
    notes: list[str] = field(default_factory=list)  # what the user should know about the rows (printed, kept)
    read_errors: list[str] = field(default_factory=list)  # "KEY: detail" of inputs an I/O error kept (at most 100)
    permission_denied: list[str] = field(default_factory=list)  # "KEY: detail" of inputs not readable by this user
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _unit_of(key: str, units: set[str]) -> str:
    """The file (or frame folder) a row or skip key belongs to."""
    if key in units:
        return key
    if "#" in key:
        return key.rsplit("#", 1)[0]
    parent = PurePosixPath(key).parent.as_posix()
    return parent if parent in units else key


def _resolved(config: IngestConfig) -> tuple[str, Any, ReaderOptions, WorkSettings]:
    name = canonical_name(config.source)
    root = Path(config.root).expanduser()
    if not root.exists():
        raise IngestError(f"--root does not exist: {root}")
    if not root.is_dir():
        raise IngestError(f"--root is not a folder: {root}")
    reader = get_reader(name)
    lists = tuple(Path(p).expanduser() for p in config.lists)
    out = config.dataset_dir.expanduser().resolve()
    options = ReaderOptions(lists, config.label_polarity, config.split,
                            celeba_labels=tuple(Path(p).expanduser() for p in config.celeba_labels),
                            exclude=(out,) if out.is_relative_to(root.resolve()) else ())
    reader.check(root, options)
    detect = (not reader.precropped_for(options)) if config.detect is None else config.detect
    settings = WorkSettings(config.frames, detect, config.margin, config.size, config.neighbours,
                            config.image_format)
    return name, reader, options, settings


def _same_lists(old: Any, new: list[str], legacy: bool) -> bool:  # noqa: ANN401 - JSON value
    """Whether the recorded list files are the files given now (resolved paths, order ignored).

    A legacy record (no ``source_name``) holds the paths as typed: a relative one is resolved against the
    current folder, or else matches a new path that ends with it (the same command rerun from elsewhere).
    """
    if not isinstance(old, list) or len(old) != len(new):
        return False
    if not legacy:
        return sorted(old) == sorted(new)

    def matches(o: str, n: str) -> bool:
        p = Path(o).expanduser()
        if str(p.resolve()) == n:
            return True
        parts = tuple(x for x in PurePosixPath(p.as_posix()).parts if x != ".")
        return not p.is_absolute() and ".." not in parts and Path(n).parts[-len(parts):] == parts

    remaining = list(new)
    for o in old:
        hit = next((n for n in remaining if matches(str(o), n)), None)
        if hit is None:
            return False
        remaining.remove(hit)
    return True


def _write_json(path: Path, obj: Any) -> None:  # noqa: ANN401 - JSON value
    """Write a JSON file atomically (`scf.shards.write_text_atomic`): a kill never leaves it torn."""
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def _sha256(path: Path, size: int | None = None) -> str:
    """SHA-256 of a file, or of its first ``size`` bytes."""
    import hashlib

    h = hashlib.sha256()
    left = path.stat().st_size if size is None else size
    with path.open("rb") as f:
        while left > 0 and (block := f.read(min(1 << 20, left))):
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def _appended(path: str, old_hash: str, old_size: Any) -> bool:  # noqa: ANN401 - JSON value
    """Whether the list at ``path`` is the recorded one with lines added at its end (its first ``old_size``
    bytes hash to ``old_hash`` and end a line)."""
    p = Path(path)
    try:
        if not isinstance(old_size, int) or not 0 < old_size < p.stat().st_size:
            return False
        with p.open("rb") as f:
            f.seek(old_size - 1)
            if f.read(1) != b"\n":
                return False
        return _sha256(p, old_size) == old_hash
    except OSError:
        return False


def _check_settings(folder: Path, recorded: dict[str, Any]) -> dict[str, Any]:
    """Refuse to resume into ``folder`` with settings that differ from those its rows were written with.

    Compared: the image settings and the row settings (`_ROW_SETTINGS`); a key missing from an older
    ``ingest_config.json`` is not compared. The one-line error names each flag with its old and new value.
    Returns the recorded ``ingest_config.json`` ({} when there is none).
    """
    path = folder / CONFIG_FILE
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IngestError(f"{path}: unreadable ({e}); choose another --out or delete the file") from e
    legacy = "source_name" not in old
    if legacy and recorded.get("source_name") == PER_ENTRY_SOURCE:
        title = get_reader(canonical_name(str(old.get("source", recorded["source"])))).title
        raise IngestError(f"{folder} was written by an older scf ingest that gave every row the source {title!r}; "
                          "this version writes each entry's dataset (MSU-MFSD, OULU-NPU, ...). Rerun into a new "
                          f"--out, or pass --source-name {title!r} to continue this folder as it was")
    changed = [k for k in _IMAGE_SETTINGS if old.get(k) != recorded.get(k)]
    for k in _ROW_SETTINGS:
        if k not in old:
            continue
        same = _same_lists(old[k], recorded[k], legacy) if k == "lists" else old[k] == recorded[k]
        if not same:
            changed.append(k)
    old_hashes = old.get("list_sha256")
    if "lists" in changed and isinstance(old_hashes, dict) and old_hashes and \
            sorted(old_hashes.values()) == sorted(recorded["list_sha256"].values()):
        changed.remove("lists")  # the same files (same contents) at another place: a moved project
        logger.info("the --list files moved (same contents as %s records): resuming", CONFIG_FILE)
        old_hashes = {}
    old_sizes = old.get("list_size") if isinstance(old.get("list_size"), dict) else {}
    if not changed and isinstance(old_hashes, dict):
        edited = [p for p, h in recorded["list_sha256"].items() if p in old_hashes and old_hashes[p] != h
                  and not _appended(p, old_hashes[p], old_sizes.get(p))]
        for p, h in recorded["list_sha256"].items():
            if p in old_hashes and old_hashes[p] != h and p not in edited:
                logger.info("%s: lines added since %s was written; the new entries are ingested", p, folder)
        if edited:
            raise IngestError(f"{edited[0]} changed since {folder} was written: rows already written keep its old "
                              "entries (labels, attack types, splits). Ingest into a new --out (or put the file back "
                              "as it was to resume)")
    if changed:
        def show(value: Any) -> str:  # noqa: ANN401 - JSON value
            return "not set" if value is None or value == [] else repr(value)

        diffs = "; ".join(f"{_FLAGS[k]} {show(old.get(k))} there, {show(recorded.get(k))} now" for k in changed)
        raise IngestError(f"{folder} was written with other settings: {diffs}. Rows already written keep the old "
                          "values: resume with the same settings or choose another --out")
    return old


ROOT_SAMPLE = 200
"""How many of the files behind a folder's rows a resume checks under ``--root`` before any work."""


def _check_root(folder: Path, root: Path, done_keys: set[str], old_root: str) -> None:
    """Refuse a resume whose ``--root`` holds fewer than half of the files the folder's rows come from.

    Up to `ROOT_SAMPLE` files, evenly spread over the sorted row keys, are looked up (one ``stat`` each), so a
    wrong ``--root`` is refused in a second instead of after ingesting another dataset into ``folder``. A few
    files moved or deleted pass here and are reported by the end-of-run stale check. ``old_root`` is the
    ``root`` that ``ingest_config.json`` records ("" when unknown), named in the error.
    """
    units = sorted({k.rsplit("#", 1)[0] for k in done_keys})
    if not units:
        return
    step = max(1, len(units) // ROOT_SAMPLE)
    sample = units[::step][:ROOT_SAMPLE]
    absent = [u for u in sample if not (root / u).exists()]
    if 2 * len(absent) > len(sample):
        was = f" (its rows were written from --root {old_root})" if old_root and old_root != str(root.resolve()) else ""
        raise IngestError(f"{folder}: {len(absent)} of {len(sample)} files its rows come from are not under --root "
                          f"{root} (e.g. {absent[0]}){was}: is --root right? A moved dataset keeps its relative "
                          "paths; to start over, ingest into a new --out")


def ingest_versions() -> dict[str, str]:
    """The software the crops depend on, recorded in ``ingest_config.json`` (``versions``) as provenance.

    `scf.schema.software_versions` plus the OpenCV and pyarrow distributions and the version of the ``cv2``
    module actually imported (face detection, video decoding and resizing are OpenCV's). Never compared on
    a resume: a rerun with upgraded software continues the folder, and the record then names the new versions.
    """
    import cv2

    return {**schema.software_versions(extra=("opencv-python-headless", "pyarrow")), "cv2": cv2.__version__}


@contextlib.contextmanager
def _holding(folder: Path) -> Iterator[None]:
    """Hold the dataset folder for one run (`scf.locking.output_lock` on ``FOLDER/.lock``): a second ``scf ingest``
    into it, or a folder that cannot be created or written, is an `IngestError` naming the folder (and the
    holder). Only this process holds it: the ``--workers`` processes never write there."""
    from scf.locking import FolderInUse, output_lock

    try:
        with output_lock(folder, "scf ingest"):
            yield
    except FolderInUse as e:  # only taking the lock raises it
        raise IngestError(str(e)) from None


@contextlib.contextmanager
def _output_errors(folder: Path, out: Path) -> Iterator[None]:
    """Turn an `OSError` creating or writing the output (a read-only or full disk, a file in the way) into an
    `IngestError` naming the dataset ``folder`` (and the file); an `OSError` about a file outside ``out`` (reading
    an input) passes through."""
    try:
        yield
    except OSError as e:
        where = os.fsdecode(e.filename2 or e.filename or "")  # a rename's target, else the file
        if e.errno in WRITE_ERRNOS and (not where or _inside(Path(where), out)):  # pyarrow names no file
            raise IngestError(write_error_message(e, folder, kept="the finished shards are kept")) from e
        if not where or not _inside(Path(where), out):
            raise
        raise IngestError(f"cannot write to {folder}: {where}: {e.strerror or _one_line(e)}") from e


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or under it (compared as absolute paths, links not followed)."""
    path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return path == folder or folder in path.parents


def run_ingest(config: IngestConfig, *, console: Any = None, show_progress: bool = True) -> IngestSummary:  # noqa: ANN401
    """Ingest one source into the benchmark dataset folder; resumable. See the module docstring.

    Args:
        config: the run settings.
        console: a `rich.console.Console` for the progress bar (default: a new one on stderr).
        show_progress: show the rich progress bar.

    Raises:
        IngestError: unknown source, missing root, wrong layout or bad option, before any work is done; the
            dataset folder held by another run (``FOLDER/.lock``, `scf.locking.output_lock`, held until this
            returns) or not writable (the message names the folder and the file).
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .card import write_cards

    start = time.monotonic()
    name, reader, options, settings = _resolved(config)
    folder = config.dataset_dir
    source_value = config.source_name or (PER_ENTRY_SOURCE if reader.per_entry_source else reader.title)
    list_files = {str(p.resolve()): p for p in (*options.lists, *options.celeba_labels) if p.is_file()}
    recorded = {"source": name, **{k: getattr(settings, k) for k in _IMAGE_SETTINGS if k != "source"},
                "source_name": source_value, "root": str(Path(config.root).expanduser().resolve()),
                "lists": [str(p.resolve()) for p in options.lists], "label_polarity": config.label_polarity,
                "celeba_labels": [str(p.resolve()) for p in options.celeba_labels],
                "split": config.split, "workers": config.workers, "shard_size": config.shard_size,
                "list_sha256": {k: _sha256(p) for k, p in list_files.items()},
                "list_size": {k: p.stat().st_size for k, p in list_files.items()},
                "versions": ingest_versions()}
    # One run per dataset folder (held before anything there is read for a resume or written); an OSError writing
    # there becomes one line.
    with _holding(folder), _output_errors(folder, config.out):
        old = _check_settings(folder, recorded)
        folder.mkdir(parents=True, exist_ok=True)
        writer = ShardWriter(folder, schema.benchmark_features(), shard_size=config.shard_size, key_column="path")
        _check_root(folder, Path(config.root).expanduser(), writer.done_keys, old.get("root") or "")
        _write_json(folder / CONFIG_FILE, recorded)

        skiplog = SkipLog(folder / SKIPPED_FILE)
        # "missing file" skips are not kept from one run to the next: this run's scan logs again (at the end) the
        # files still missing, and a file that is back is ingested. Dropped in memory here and written in one
        # rewrite before the summary (`SkipLog.save`), so a kill in between leaves the last complete run's log.
        was_missing = set(skiplog.discard_where(lambda e: e["reason"] == MISSING_FILE))
        # Nor are "I/O error" skips (`worker.READ_ERROR`): the disk or the network failed, not the file; they are
        # read again now. Nor "permission denied" ones (`worker.PERMISSION_DENIED`): the user may have fixed the
        # permissions (the documented way to retry them is to rerun the same command).
        retried = skiplog.discard_where(lambda e: e["reason"] in (READ_ERROR, PERMISSION_DENIED))
        if retried:
            logger.info("retrying %d input(s) an I/O error or a refused permission kept from an earlier run",
                        len(retried))
        done_keys = writer.done_keys
        done_by_unit: dict[str, set[str]] = {}
        for key in done_keys:
            unit = key.rsplit("#", 1)[0] if "#" in key else PurePosixPath(key).parent.as_posix()
            done_by_unit.setdefault(unit, set()).add(key)
        skipped_by_unit: dict[str, set[str]] = {}
        for key in skiplog.entries:
            if "#" in key:
                skipped_by_unit.setdefault(key.rsplit("#", 1)[0], set()).add(key)

        units: set[str] = set()
        missing: dict[str, str] = {}  # unit -> detail of this scan's "missing file" skips (logged at the end)
        rows_before = len(done_keys)
        console = console or Console(stderr=True)
        progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("{task.completed} files"), TextColumn("{task.fields[rows]} rows"),
                            TextColumn("{task.fields[skips]} skipped"), TimeElapsedColumn(), console=console,
                            disable=not show_progress, transient=False)
        counters = {"rows": 0, "skips": 0}

        def tasks() -> Iterator[Item]:
            for entry in reader.scan(Path(config.root).expanduser(), options):
                if isinstance(entry, Skip):
                    units.add(entry.path)
                    if entry.reason == MISSING_FILE:  # logged at the end, and only if the file has no rows (stale)
                        missing[entry.path] = entry.detail
                        counters["skips"] += entry.path not in was_missing
                        progress.update(task, advance=1, rows=counters["rows"], skips=counters["skips"])
                        continue
                    if entry.path not in skiplog.entries:
                        counters["skips"] += 1
                    skiplog.add(entry.path, entry.reason, entry.detail)
                    progress.update(task, advance=1, rows=counters["rows"], skips=counters["skips"])
                    continue
                if entry.path in units:  # the same file twice (a manifest or list naming it twice): once only
                    skiplog.add(f"{entry.path}@duplicate", "duplicate entry", entry.path)
                    counters["skips"] += 1
                    continue
                units.add(entry.path)
                if entry.key in done_keys or entry.key in skiplog.entries:
                    progress.update(task, advance=1)
                    continue  # finished by an earlier run (a row or a logged skip)
                if entry.kind == "video" and (problem := schema.utf8_path_problem(
                        Path(config.root).expanduser() / entry.path)):
                    raise IngestError(problem)  # OpenCV cannot open it: stop, not a skip that a rerun keeps
                yield entry

        def handle(outcome: Outcome, item: Item) -> None:
            for row in outcome.rows:
                writer.add(row, row["split"])
            for key, reason, detail in outcome.skips:
                skiplog.add(key, reason, detail)
            counters["rows"] += len(outcome.rows)
            counters["skips"] += len(outcome.skips)
            progress.update(task, advance=1, rows=counters["rows"], skips=counters["skips"])

        def args(item: Item) -> tuple:
            done = frozenset(done_by_unit.get(item.path, ())) if item.kind != "image" else frozenset()
            skipped = frozenset(skipped_by_unit.get(item.path, ())) if item.kind != "image" else frozenset()
            source = config.source_name or item.source or reader.title
            return item, str(Path(config.root).expanduser()), source, settings, done, skipped

        logger.info("ingest %s from %s into %s (%s)", source_value, config.root, folder,
                    ", ".join(f"{k}={v}" for k, v in asdict(settings).items()))
        with progress, writer:
            task = progress.add_task(f"ingest {reader.title}", total=None, rows=0, skips=0)
            if config.workers == 1:
                for item in tasks():
                    handle(process(*args(item)), item)
            else:
                _run_pool(config.workers, tasks(), args, handle)

        found = units - missing.keys()
        stale = sorted(k for k in done_keys if _unit_of(k, units) not in found)  # their file was not found this time
        pruned = _prune_rows(folder, set(stale)) if stale and config.prune_missing else 0
        stale_units = {_unit_of(k, units) for k in stale}
        with_rows = set() if pruned else stale_units
        for unit, detail in missing.items():  # a missing file with rows is reported as stale, not as a skip
            if unit not in with_rows:
                skiplog.add(unit, MISSING_FILE, detail)
        skiplog.save()  # the earlier runs' "missing file" records of files found now are gone from the file
        summary = summarize(folder, name, config.source_name, units, reader.other_files, default_title=reader.title)
        if stale and not pruned:
            summary.stale_rows = len(stale)
            summary.stale_files = sorted(stale_units)[:100]
            logger.warning("%d row(s) of files no longer found under --root (or in the lists) are still in %s, e.g. "
                           "%s; --prune-missing drops them", len(stale), folder, stale[0])
        summary.pruned_rows = pruned
        written = {_unit_of(k, units) for k in writer.done_keys} - (stale_units if pruned else set())
        defaulted = len(reader.default_split_paths & written)  # items with rows, not every row of the manifest
        if defaulted:
            summary.notes.append(
                f"{defaulted} item(s) had no split folder (train/, dev/, test/) or split column and no "
                "--split, so they went to the 'test' split; to train on them, sort them into train/ and test/ "
                "folders (or a split column), or ingest with --split train")
        for note in summary.notes:
            logger.debug("%s", note)  # the CLI prints the notes under its summary table (once)
        summary.rows_this_run = summary.rows_total - rows_before + pruned
        summary.seconds = round(time.monotonic() - start, 2)
        summary.settings = recorded
        _write_json(folder / SUMMARY_FILE, summary.to_json())
        write_cards(config, reader, summary)
        if summary.unaccounted:
            logger.error("%d file(s) seen have neither rows nor a skip record, e.g. %s", len(summary.unaccounted),
                         summary.unaccounted[:3])
        return summary


def _prune_rows(folder: Path, keys: set[str]) -> int:
    """Drop the rows whose ``path`` is in ``keys`` from the shards of ``folder`` (each shard rewritten
    atomically; a shard left empty is deleted). Returns the number of rows dropped."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from scf.shards import SHARD_PATTERN, read_parquet, write_parquet

    dropped = 0
    value_set = pa.array(sorted(keys), type=pa.string())
    for path in sorted((folder / "data").glob("*.parquet")):
        if not SHARD_PATTERN.match(path.name):
            continue
        table = read_parquet(path)
        mask = pc.is_in(table.column("path"), value_set=value_set)
        n = pc.sum(mask).as_py() or 0
        if not n:
            continue
        dropped += n
        if n == table.num_rows:
            path.unlink()
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        write_parquet(table.filter(pc.invert(mask)), tmp)
        os.replace(tmp, path)
    logger.debug("dropped %d row(s) of files no longer found (--prune-missing)", dropped)  # the CLI says it
    return dropped


POOL_IN_FLIGHT = 2
"""Items being processed per worker process (submitted, not finished)."""
POOL_REORDER = 64
"""Finished items per worker process that may wait for a slower item submitted before them: results are
written in submission order, so a long video holds back the writing of those after it (not their processing)
until this many have finished; only then do the workers wait for it."""


def _run_pool(workers: int, items: Iterator[Item], args: Any, handle: Any) -> None:  # noqa: ANN401
    """Run `process` over items in ``workers`` processes, at most ``POOL_IN_FLIGHT * workers`` in flight.

    Results are handled in the order the items were submitted, not the order they finish, so the shards hold
    the rows in the order ``--workers 1`` writes them, whatever the number of workers and their timing: row
    order decides the training batches and the corpus order downstream, so it must not vary between runs.
    Items that finish before an earlier one wait in a reorder buffer (at most ``POOL_REORDER * workers``), so
    the workers keep busy behind a slow item.
    """
    import multiprocessing

    # spawn: the parent holds pyarrow/datasets threads, which fork would copy in an undefined state.
    context = multiprocessing.get_context("spawn")
    pending: deque[tuple[Future, Item]] = deque()  # submission order: running, then finished but not written
    # init_worker(pid): a worker ends itself when this process dies without shutting the pool down (kill -9)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker,
                               initargs=(os.getpid(),))

    def write_finished_head() -> None:
        while pending and pending[0][0].done():
            future, submitted = pending.popleft()
            handle(future.result(), submitted)

    try:
        for item in items:
            pending.append((pool.submit(process, *args(item)), item))
            write_finished_head()
            while True:
                running = [f for f, _ in pending if not f.done()]
                if len(running) < POOL_IN_FLIGHT * workers and len(pending) < POOL_REORDER * workers:
                    break
                wait(running if len(running) >= POOL_IN_FLIGHT * workers else [pending[0][0]],
                     return_when=FIRST_COMPLETED)
                write_finished_head()
        while pending:
            future, submitted = pending.popleft()
            handle(future.result(), submitted)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def summarize(folder: Path, source: str, title: str | None, units: set[str], other_files: dict[str, int], *,
              default_title: str = "") -> IngestSummary:
    """Recount a dataset folder from its shards and skip log (only the plain columns are read).

    ``title`` None names the dataset by the ``source`` values its rows hold (a list reader writes each
    entry's dataset; an HKBU-MARs V2 root writes ``HKBU-MARs-V2``), else ``default_title``.
    """
    from scf.shards import SHARD_PATTERN, read_parquet

    splits: dict[str, dict[str, Any]] = {}
    row_units: set[str] = set()
    row_sources: set[str] = set()
    for path in sorted((folder / "data").glob("*.parquet")):
        m = SHARD_PATTERN.match(path.name)
        if not m:
            continue
        table = read_parquet(path, columns=["label", "attack_type", "video_id", "path", "source"]).to_pydict()
        row_sources.update(table["source"])
        s = splits.setdefault(m["split"], {"rows": 0, "real": 0, "fake": 0, "videos": set(), "attack_types": {}})
        for label, attack, video_id, key in zip(table["label"], table["attack_type"], table["video_id"],
                                                table["path"], strict=True):
            s["rows"] += 1
            s["real" if label == schema.LABEL_REAL else "fake"] += 1
            s["videos"].add(video_id)
            s["attack_types"][attack] = s["attack_types"].get(attack, 0) + 1
            row_units.add(_unit_of(key, units))
    order = {n: i for i, n in enumerate(schema.SPLITS)}
    splits = {k: splits[k] for k in sorted(splits, key=lambda k: (order.get(k, 9), k))}
    for s in splits.values():
        s["videos"] = len(s["videos"])
        s["attack_types"] = {t: s["attack_types"][t] for t in schema.ATTACK_TYPES if t in s["attack_types"]}
    skiplog = SkipLog(folder / SKIPPED_FILE)
    skip_units = {_unit_of(k, units) for k in skiplog.entries}
    seen = units or (row_units | skip_units)
    unaccounted = sorted(seen - row_units - skip_units)
    title = title or ", ".join(sorted(row_sources)) or default_title
    return IngestSummary(
        source=source, title=title, splits=splits, skipped=skiplog.reasons(), files_seen=len(seen),
        files_with_rows=len(seen & row_units), files_skipped=len((seen & skip_units) - row_units),
        unaccounted=unaccounted[:100], rows_total=sum(s["rows"] for s in splits.values()),
        skipped_total=len(skiplog.entries), rows_this_run=0, other_files=dict(sorted(other_files.items())),
        read_errors=[f"{k}: {e.get('detail', '')}" for k, e in skiplog.entries.items()
                     if e["reason"] == READ_ERROR][:100],
        permission_denied=[f"{k}: {e.get('detail', '')}" for k, e in skiplog.entries.items()
                           if e["reason"] == PERMISSION_DENIED][:100],
    )
