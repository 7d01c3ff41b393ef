"""The corpus contract of the I-FAS toolkit: column names, vocabularies, `datasets.Features` and validators.

This is the one module of `scf` that the other packages import (`ifas_model` reads the VQA corpus,
`ifas_eval` reads the benchmark dataset). It imports nothing heavy at module level so that importing it
is cheap; `datasets` is imported inside the functions that need it.

Two tables are defined:

* the **benchmark dataset**: labelled face crops, one row per frame (image datasets: one row per image,
  with ``frame_index = 0`` and ``video_id`` = the image id). Columns are `BENCHMARK_COLUMNS`.
* the **VQA corpus** read by ``ifas-train``: the benchmark columns plus the question, the answer split
  into judgment and interpretation (paper eq. 3), and captioner provenance. Columns are `VQA_COLUMNS`.

Label polarity is fixed here once for the whole toolkit: ``label = 1`` means **real** (bona fide),
``label = 0`` means **fake** (presentation attack). Scores everywhere are P(real). This is the FLIP/SSDG
convention that the paper's comparison tables use (koushiksrivats/FLIP ``utils/statistic.py``, the same
file in taylover-pei/SSDG-CVPR2020); datasets that ship the opposite polarity
(CASIA-FAS lists) are converted on ingest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    import datasets

# --- Labels ---------------------------------------------------------------------------------------
LABEL_REAL = 1
"""Bona fide (live) face. Scores are P(label == LABEL_REAL)."""
LABEL_FAKE = 0
"""Presentation attack."""
LABEL_NAMES = ("fake", "real")
"""`datasets.ClassLabel` names, index = label value (so ``LABEL_NAMES[1] == "real"``)."""

# --- Attack types: a closed vocabulary ------------------------------------------------------------
ATTACK_TYPES = ("live", "print", "replay", "mask", "mannequin", "makeup", "other")
"""Closed vocabulary of attack types. ``live`` is the type of every real row and of no fake row.

* ``print``: printed photo, poster, A4 paper, paper cut-outs and paper masks worn flat (CelebA-Spoof 1-6).
* ``replay``: a face shown on a screen (phone, tablet, PC monitor).
* ``mask``: 3D masks (resin, silicone, plaster, transparent; HiFiMask, 3DMask, HKBU-MARs, WMCA).
* ``mannequin``: mannequin or doll heads.
* ``makeup``: impersonation or obfuscation make-up (SiW-M).
* ``other``: anything else (partial attacks, funny eye, paper glasses, ...).
"""
SPOOF_TYPES = ATTACK_TYPES[1:]
"""Attack types of fake rows."""

SPLITS = ("train", "dev", "test")
"""Splits a benchmark row may belong to (the dataset's own protocol split)."""

# --- The VQA format of the paper (eq. 3) ----------------------------------------------------------
QUESTION = "Is this photo of a real person?"
"""The single instruction of the paper, identical for every sample."""
JUDGMENT_REAL = "Yes"
JUDGMENT_FAKE = "No"
INTERPRETATION_PREFIX = "This is "
"""T_Interpretation = "This is <caption>" (paper, after eq. 3)."""
ANSWER_SEPARATOR = ". "
"""Between judgment and interpretation in the full answer: "Yes. This is a man ..."."""

# --- Columns ---------------------------------------------------------------------------------------
BENCHMARK_COLUMNS = (
    "image",  # the face crop (RGB, 224x224 by default)
    "label",  # 1 = real, 0 = fake (LABEL_NAMES)
    "attack_type",  # one of ATTACK_TYPES
    "attack_detail",  # free text sub-type as the dataset names it ("A4", "ipad_video", ...), "" if none
    "source",  # source dataset name ("OULU-NPU", "CelebA-Spoof", "sample-domain-a", ...)
    "subject_id",  # subject identity as the dataset names it, "" when unknown
    "video_id",  # identifies the video (frames of one video share it); images use their own id
    "frame_index",  # index of the frame in its video, 0 for still images
    "split",  # one of SPLITS, the dataset's own protocol split
    "path",  # path of the original file relative to the dataset root (provenance, resume key)
)
VQA_EXTRA_COLUMNS = (
    "question",  # QUESTION
    "judgment",  # "Yes" (real) or "No" (fake)
    "interpretation",  # "This is <caption>"; empty for judgment-only corpora
    "answer",  # judgment + ANSWER_SEPARATOR + interpretation (or judgment alone)
    "caption",  # the caption used in the interpretation (T_R for reals, T_S for fakes)
    "caption_general",  # the general captioner's caption of this image (T_R / T_F), kept for ablations
    "captioner",  # id or path of the captioner that wrote `caption`
    "captioner_general",  # id or path of the general captioner C_G
    "keyword",  # the spoof keyword matched in `caption_general` ("" if none; always "" for reals)
)
VQA_COLUMNS = BENCHMARK_COLUMNS + VQA_EXTRA_COLUMNS

_STRING_COLUMNS = (
    "attack_type",
    "attack_detail",
    "source",
    "subject_id",
    "video_id",
    "split",
    "path",
) + VQA_EXTRA_COLUMNS


class SchemaError(ValueError):
    """A table breaks the corpus contract. The message names the file, column and row."""

    def __init__(self, message: str, *, column: str | None = None, row: int | None = None,
                 file: str | None = None) -> None:
        where = []
        if file:
            where.append(f"file {file}")
        if column is not None:
            where.append(f"column '{column}'")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.column, self.row, self.file = column, row, file


def benchmark_features() -> datasets.Features:
    """`datasets.Features` of the benchmark dataset (columns `BENCHMARK_COLUMNS`)."""
    import datasets

    feats: dict[str, Any] = {}
    for name in BENCHMARK_COLUMNS:
        if name == "image":
            feats[name] = datasets.Image()
        elif name == "label":
            feats[name] = datasets.ClassLabel(names=list(LABEL_NAMES))
        elif name == "frame_index":
            feats[name] = datasets.Value("int32")
        else:
            feats[name] = datasets.Value("string")
    return datasets.Features(feats)


def vqa_features() -> datasets.Features:
    """`datasets.Features` of the VQA corpus (columns `VQA_COLUMNS`)."""
    import datasets

    feats = dict(benchmark_features())
    for name in VQA_EXTRA_COLUMNS:
        feats[name] = datasets.Value("string")
    return datasets.Features(feats)


def judgment_for(label: int) -> str:
    """The judgment word of a label: "Yes" for real, "No" for fake."""
    return JUDGMENT_REAL if int(label) == LABEL_REAL else JUDGMENT_FAKE


def interpretation_for(caption: str) -> str:
    """T_Interpretation = "This is <caption>", with the caption's trailing period removed."""
    caption = caption.strip().rstrip(".").strip()
    return f"{INTERPRETATION_PREFIX}{caption}" if caption else ""


def compose_answer(judgment: str, interpretation: str) -> str:
    """T_A = [T_Judgment, T_Interpretation] as one string (paper eq. 3)."""
    return f"{judgment}{ANSWER_SEPARATOR}{interpretation}" if interpretation else judgment


@dataclass(frozen=True)
class _Check:
    column: str
    message: str


def _row_problem(row: Mapping[str, Any], kind: str) -> _Check | None:
    """First contract violation in one row (image column excluded), or None."""
    label = row["label"]
    if label not in (LABEL_FAKE, LABEL_REAL):
        return _Check("label", f"label must be {LABEL_REAL} (real) or {LABEL_FAKE} (fake), got {label!r}")
    for name in _STRING_COLUMNS:
        if name in row and not isinstance(row[name], str):
            return _Check(name, f"must be a string, got {type(row[name]).__name__}")
    attack = row["attack_type"]
    if attack not in ATTACK_TYPES:
        return _Check("attack_type", f"{attack!r} is not one of {', '.join(ATTACK_TYPES)}")
    if (label == LABEL_REAL) != (attack == "live"):
        return _Check(
            "attack_type",
            f"label {label} ({LABEL_NAMES[label]}) does not agree with attack type {attack!r} "
            "(real rows are 'live', fake rows are never 'live')",
        )
    if row["split"] not in SPLITS:
        return _Check("split", f"{row['split']!r} is not one of {', '.join(SPLITS)}")
    if not row["source"]:
        return _Check("source", "must not be empty")
    if not row["video_id"]:
        return _Check("video_id", "must not be empty")
    frame = row["frame_index"]
    if not isinstance(frame, int) or frame < 0:
        return _Check("frame_index", f"must be an integer >= 0, got {frame!r}")
    if kind == "vqa":
        if row["question"] != QUESTION:
            return _Check("question", f"must be {QUESTION!r}, got {row['question']!r}")
        if row["judgment"] != judgment_for(label):
            return _Check("judgment", f"label {label} needs judgment {judgment_for(label)!r}, got {row['judgment']!r}")
        interp = row["interpretation"]
        if interp and not interp.startswith(INTERPRETATION_PREFIX):
            return _Check("interpretation", f"must start with {INTERPRETATION_PREFIX!r}, got {interp!r}")
        if row["answer"] != compose_answer(row["judgment"], interp):
            return _Check("answer", f"must be judgment + {ANSWER_SEPARATOR!r} + interpretation, got {row['answer']!r}")
    return None


def validate_rows(rows: Iterable[Mapping[str, Any]], kind: str = "benchmark", *, file: str | None = None,
                  start: int = 0) -> int:
    """Check rows (dicts) against the contract; return how many were checked.

    Args:
        rows: the rows; the ``image`` value is not inspected (decode errors surface on ingest).
        kind: ``"benchmark"`` or ``"vqa"``.
        file: shown in the error message (a dataset path or Hub id).
        start: index of the first row, for the error message.

    Raises:
        SchemaError: naming the file, the first offending column and the row.
    """
    columns = _columns_for(kind)
    n = 0
    for i, row in enumerate(rows, start=start):
        missing = [c for c in columns if c != "image" and c not in row]
        if missing:
            raise SchemaError(f"missing (expected columns: {', '.join(columns)})", column=missing[0], row=i,
                              file=file)
        problem = _row_problem(row, kind)
        if problem is not None:
            raise SchemaError(problem.message, column=problem.column, row=i, file=file)
        n += 1
    return n


def _columns_for(kind: str) -> tuple[str, ...]:
    if kind == "benchmark":
        return BENCHMARK_COLUMNS
    if kind == "vqa":
        return VQA_COLUMNS
    raise ValueError(f"kind must be 'benchmark' or 'vqa', got {kind!r}")


def validate_dataset(ds: datasets.Dataset, kind: str = "benchmark", *, file: str | None = None,
                     batch_size: int = 10_000) -> None:
    """Check a `datasets.Dataset` against the contract without decoding its images.

    Column presence is checked first (the first missing column is named), then every row in batches.

    Raises:
        SchemaError: naming the file, the first offending column and the row.
    """
    columns = _columns_for(kind)
    present = set(ds.column_names)
    for c in columns:
        if c not in present:
            raise SchemaError(f"missing; the {kind} schema needs: {', '.join(columns)}", column=c, file=file)
    label_feature = ds.features.get("label")
    names = getattr(label_feature, "names", None)
    if names is not None and tuple(names) != LABEL_NAMES:
        raise SchemaError(f"ClassLabel names must be {list(LABEL_NAMES)} (real = 1), got {names}",
                          column="label", file=file)
    plain = ds.select_columns([c for c in columns if c != "image"])
    for start in range(0, len(plain), batch_size):
        batch = plain[start : start + batch_size]
        keys = list(batch)
        rows = (dict(zip(keys, values, strict=True)) for values in zip(*(batch[k] for k in keys), strict=True))
        validate_rows(rows, kind, file=file, start=start)


#: Distributions whose versions every tool records beside what it writes (provenance of a file).
PROVENANCE_PACKAGES = ("ifas-scf", "ifas-model", "ifas-eval", "torch", "transformers", "datasets")


def software_versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Versions of the toolkit and its main libraries, for the provenance of a written file.

    The three toolkit distributions, torch, transformers and datasets (plus ``extra``), read from the installed
    package metadata; a distribution that is not installed is recorded as ``"not installed"``. The shared
    record of `scf ingest`, `scf caption`, `ifas-train` and `ifas-eval` (``versions`` in their JSON files).

    Args:
        extra: further distribution names to record (e.g. ``"opencv-python-headless"``).

    Returns:
        ``{"python": ..., distribution: version, ...}`` in a fixed order.
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in (*PROVENANCE_PACKAGES, *extra):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def attack_type_counts(labels: Sequence[int], attack_types: Sequence[str]) -> dict[str, int]:
    """Counts per attack type (reals counted as ``live``), in vocabulary order, zeros dropped."""
    counts = dict.fromkeys(ATTACK_TYPES, 0)
    for _label, attack in zip(labels, attack_types, strict=True):
        counts[attack] = counts.get(attack, 0) + 1
    return {k: v for k, v in counts.items() if v}


def looks_local(source: str) -> bool:
    """Whether ``source``, when it names nothing here, is meant as a local path rather than a Hub id ``org/name``:
    absolute, starting with ``.`` or ``~``, or not exactly one ``/`` (the rule of `load_table`)."""
    return source.startswith((".", "/", "~")) or source.count("/") != 1


def utf8_path_problem(path: str | Path,
                      users: str = "the tokenizers, safetensors and OpenCV libraries use") -> str | None:
    """Why a library that encodes paths as UTF-8 cannot open ``path`` here (one line, with the fix), or None.

    ``users`` names who needs the UTF-8 path, as the message's subject (``"... use"``).

    Python encodes file names with the locale's file-system encoding; the tokenizers and safetensors libraries
    (``save_pretrained``/``from_pretrained``), OpenCV's video reader and pyarrow always use UTF-8. Under a
    non-UTF-8 locale (e.g. ``LANG=en_US.ISO-8859-1``) a non-ASCII path therefore names two different files.
    (``LANG=C``/``POSIX`` is not affected: Python switches to UTF-8 there.) scf reads and writes its parquet files
    through Python (`scf.shards.read_parquet`), so only the model and video files need this check.
    """
    import codecs
    import sys

    encoding = sys.getfilesystemencoding()
    if str(path).isascii() or codecs.lookup(encoding).name == "utf-8":
        return None
    return (f"{path}: a non-ASCII path under a locale whose file-system encoding is {encoding}, while {users} "
            "UTF-8 paths and would not find the file: set a UTF-8 locale (e.g. LANG=C.UTF-8) or PYTHONUTF8=1, or "
            "use an ASCII path")


def load_table(source: str | Path, kind: str = "benchmark", *, name: str | None = None,
               validate: bool = True) -> datasets.DatasetDict:
    """Load a benchmark dataset or VQA corpus from a local folder or the Hub, and check it.

    Accepted forms, tried in this order:

    * a folder written by ``save_to_disk`` (has ``dataset_dict.json`` or ``state.json``): `load_from_disk`;
    * a local folder of data files in the Hub layout (what ``scf ingest`` / ``scf caption`` write):
      ``datasets.load_dataset(FOLDER)``;
    * a Hub id ``org/name`` (``name`` selects a config, one per source dataset): ``datasets.load_dataset``.

    Several sources in one dataset (a local parent folder with one dataset folder per source, as
    ``scf ingest --config NAME`` writes it, or a Hub dataset with one config per source): ``name`` picks one;
    without it, every source is loaded and their splits concatenated (rows keep their ``source`` column).

    Args:
        source: a local folder (a ``str`` or ``Path``) or a Hub id ``org/name``. A relative path with a single
            ``/`` that does not exist here (``runs/corpus``) has the shape of a Hub id and is looked up on the
            Hub; write ``./runs/corpus`` to mean the local folder.
        kind: ``"benchmark"`` (`scf ingest`'s benchmark dataset) or ``"vqa"`` (`scf caption`'s VQA corpus).
        name: the config (source dataset) to load; None loads every config.
        validate: check the rows against the contract (columns, labels, attack types).

    Raises:
        FileNotFoundError: a local-looking path (absolute, ``./``, ``~``, or not exactly one ``/``) that does
            not exist.
        SchemaError: the table breaks the contract (file, column and row named), or a local data file cannot
            be read (a truncated shard; the file is named).
    """
    from pathlib import Path

    import datasets

    source = str(source)  # a Path works too
    path = Path(source).expanduser()
    if path.exists():
        configs = _local_configs(path)
        if name is not None and name in configs:
            return load_table(str(path / name), kind, validate=validate)
        if configs and name is None:
            return _concatenate([load_table(str(path / c), kind, validate=validate) for c in configs])
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            loaded = datasets.load_from_disk(str(path))
        else:
            users = "`datasets` names its Arrow copy of the folder after it, and pyarrow writes that copy with"
            if utf8_path_problem(path.name, users):  # only the folder's own name: its files are read by Python
                raise SchemaError(utf8_path_problem(path, users))
            cache_dir = _local_cache_dir(path)
            try:
                loaded = datasets.load_dataset(str(path), name=name, cache_dir=str(cache_dir))
                _drop_older_copies(cache_dir)
            except (datasets.exceptions.DatasetGenerationError, OSError) as e:
                full = _cache_write_problem(e, path, cache_dir)
                if full:
                    raise SchemaError(full) from e
                if isinstance(e, OSError):
                    raise
                # the cause names the data file (a truncated shard: "Parquet magic bytes not found ...")
                cause = e.__cause__ or e
                bad = _unreadable_parquet(path)
                if bad:
                    raise SchemaError(f"{bad[0]}: unreadable shard ({bad[1]}); it was probably cut short (a crash, "
                                      "a full disk, a partial copy): delete it and rerun what wrote it (scf ingest "
                                      "/ scf caption redo its rows), or copy it again") from e
                # every shard reads on its own: they disagree (columns or types), e.g. copied in from elsewhere
                first = " ".join(str(cause).split())[:300]
                raise SchemaError(f"{source}: its data files cannot be loaded together ({type(cause).__name__}: "
                                  f"{first}); the shards under it disagree in columns or types (written by "
                                  "different tools or versions, or copied in from another dataset?): check "
                                  "its data/*.parquet files") from e
    elif looks_local(source):
        raise FileNotFoundError(f"dataset not found: {source} (not a local folder, nor a Hub id org/name)")
    else:
        if name is None:
            names = datasets.get_dataset_config_names(source)
            if len(names) > 1:
                return _concatenate([load_table(source, kind, name=n, validate=validate) for n in names])
        loaded = datasets.load_dataset(source, name=name)
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    if validate:
        for split, ds in loaded.items():
            validate_dataset(ds, kind, file=f"{source} [{split}]")
    return loaded


def _cache_write_problem(error: BaseException, folder: Path, cache_dir: Path) -> str | None:
    """The one line for a load that failed because the `datasets` cache could not be written (its Arrow copy of
    ``folder``, `_local_cache_dir`: a full disk or home quota, a read-only cache), or None for any other failure.

    A full disk, quota, too-large file or read-only file system can only be the cache (the load writes nowhere
    else); a refused permission or an I/O error only when the file it names is in the cache (else it was
    reading the dataset)."""
    from scf.shards import NO_ROOM_ERRNOS, WRITE_ERRNOS, os_error_of

    e = os_error_of(error)
    if e is None:
        return None
    root = cache_dir.parent.parent.parent  # $HF_DATASETS_CACHE (scf-local/<folder hash>/<content hash>)
    named = os.fsdecode(e.filename) if e.filename else ""
    in_cache = bool(named) and Path(os.path.abspath(named)).is_relative_to(os.path.abspath(root))
    if e.errno not in NO_ROOM_ERRNOS and not (e.errno in WRITE_ERRNOS and in_cache):
        return None
    data = folder / "data" if (folder / "data").is_dir() else folder
    size = sum(p.stat().st_size for p in data.rglob("*.parquet") if p.is_file())
    need = f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{max(1, round(size / 1e6))} MB"
    return (f"cannot write the datasets cache copy of {folder} into {root} ({e.strerror or e}); it needs about "
            f"{need} (the size of its shards) there: free space there, or set HF_DATASETS_CACHE to a "
            "folder on a larger disk, then rerun the same command (docs/ingest.md#disk-space)")


def _unreadable_parquet(folder: Path) -> tuple[Path, str] | None:
    """The first parquet data file of a local dataset folder whose footer cannot be read, with the error."""
    from scf.shards import read_parquet_metadata

    for f in sorted(folder.rglob("*.parquet")):
        if any(part.startswith(".") for part in f.relative_to(folder).parts):
            continue  # hidden files and folders are not data files for `datasets` either
        try:
            read_parquet_metadata(f)
        except (OSError, ValueError) as e:
            return f, f"{type(e).__name__}: {e}"
    return None


def _local_cache_dir(folder: Path) -> Path:
    """The `datasets` cache folder of a local dataset folder: ``scf-local/<folder hash>/<content hash>``.

    `datasets` converts a local folder's data files into Arrow files in its cache on the first load (a full
    copy, image bytes included: about the size of the shards) and keys that cache on names and coarse file
    metadata, so a folder rewritten within the same second could be served stale rows. Here the content hash
    covers exactly what decides the rows: the relative names, sizes and nanosecond modification times of the
    data files (everything under ``data/`` when the folder has one, as ``scf ingest`` and ``scf caption``
    write it; otherwise every file but the card), and the text of the card's YAML header (its ``configs``
    and features pick the files and types). The bookkeeping files an ``scf ingest`` rerun rewrites
    (``README.md`` below its header, ``ingest_summary.json``, ``ingest_config.json``, ``skipped.jsonl``)
    are left out, so a rerun that adds nothing does not make the next load convert everything again; a
    changed, added or removed shard does. The folder hash (of the resolved path) groups the copies of one
    dataset folder, so that `_drop_older_copies` keeps one per folder.
    """
    import hashlib

    import datasets

    folder = folder.resolve()
    data = folder / "data"
    base = data if data.is_dir() else folder
    h = hashlib.sha1()
    for f in sorted(p for p in base.rglob("*") if p.is_file()
                    and not any(is_hidden_from_loaders(q) for q in p.relative_to(folder).parts)):
        if f == folder / "README.md":
            continue
        st = f.stat()
        h.update(f"{f.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    card = folder / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8", errors="replace")
        if text.startswith("---"):
            header = text.split("\n---", 1)[0]
            h.update(f"README.md\0{header}\n".encode())
    where = hashlib.sha1(str(folder).encode()).hexdigest()[:16]
    return Path(datasets.config.HF_DATASETS_CACHE) / "scf-local" / where / h.hexdigest()[:16]


def _drop_older_copies(cache_dir: Path) -> None:
    """Remove the other cached copies of the same dataset folder (siblings of ``cache_dir``), after a load.

    Only copies none of whose files changed after the current copy was written are removed, and none whose
    `datasets` lock is held (POSIX): a copy another process is converting at this moment is left alone (one
    that a process has open for reading stays readable by it on POSIX). The
    copies of other dataset folders live under other folder hashes and are never touched. A copy that
    cannot be removed (a file open on Windows, permissions) is left, with a debug message; the next load
    tries again. Copies made before this layout (``scf-local/<hash>`` directly, no folder level) are not
    recognised as anyone's and stay: delete them by hand.
    """
    import shutil

    current = _newest_mtime(cache_dir)
    if current is None:
        return
    for sibling in cache_dir.parent.iterdir():
        if sibling == cache_dir or not sibling.is_dir():
            continue
        try:
            newest = _newest_mtime(sibling)
            if newest is None or newest >= current or _lock_held(sibling):
                continue
            shutil.rmtree(sibling)
            logger.info("removed an older cached copy of this dataset folder: %s", sibling)
        except OSError as e:
            logger.debug("could not remove the older cached copy %s: %s", sibling, e)


def _newest_mtime(folder: Path) -> int | None:
    """The newest modification time (ns) of the data files under ``folder`` (Arrow files, their info), lock
    files left out: `datasets` touches those on every load, a cache hit too."""
    import os

    newest = None
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".lock"):
                continue
            t = os.lstat(os.path.join(dirpath, name)).st_mtime_ns
            newest = t if newest is None else max(newest, t)
    return newest


def _lock_held(folder: Path) -> bool:
    """Whether another process holds a `datasets` lock file under ``folder`` (POSIX ``flock``; False elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: an open file cannot be removed there anyway
        return False
    for lock in folder.rglob("*.lock"):
        with lock.open("a", encoding="utf-8") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
    return False


STAGED_COPY_SUFFIX = ".hub-upload"
"""The name ending of the copy that a push stages (`scf.hub.staged_folder`); never data of its own."""


def is_hidden_from_loaders(path: str | Path) -> bool:
    """Whether a folder is skipped when a parent folder is searched for datasets: a dot-folder (``.cache``,
    the staged copy ``.oulu.hub-upload`` of a push) or a staged copy ``oulu.hub-upload`` left by an older
    version. Such a copy holds the same rows as its source; loading it too would load every row twice."""
    name = Path(path).name
    return name.startswith(".") or name.endswith(STAGED_COPY_SUFFIX)


def _local_configs(folder: Path) -> list[str]:
    """Sub-folders that are datasets of their own (one config per source), when ``folder`` has no data itself;
    hidden folders and staged push copies (`is_hidden_from_loaders`) are not."""
    if (folder / "data").is_dir() or (folder / "dataset_dict.json").exists() or (folder / "state.json").exists():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not is_hidden_from_loaders(p)
                  and ((p / "data").is_dir() or (p / "dataset_dict.json").exists()))


def _concatenate(parts: list[datasets.DatasetDict]) -> datasets.DatasetDict:
    import datasets

    splits: dict[str, list[datasets.Dataset]] = {}
    for part in parts:
        for split, ds in part.items():
            splits.setdefault(split, []).append(ds)
    return datasets.DatasetDict({k: datasets.concatenate_datasets(v) for k, v in splits.items()})
