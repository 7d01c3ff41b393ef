"""Checkpoint scoring on a protocol: load the benchmark data, score every test set, write score files.

Scores are the model's one-forward-pass P("Yes") = P(real) (`ifas_model.inference.score_images`), one per
frame, written incrementally to ``<out>/scores/<setting>/<checkpoint>/<test set>.csv`` in the score-file
format (`ifas_eval.scorefile`). A killed run resumes: finished files are reused (when their rows are the
test set's) and a ``.partial`` file continues from its last complete row; both only when the folder's
``scored_with.json`` shows the same checkpoint files (SHA-256), dtype, normalisation and exclusions
(`prepare_score_folder`); another checkpoint's scores are never deleted (`score_folder_for`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ifas_eval import scorefile
from ifas_eval.metrics import ScoreSet
from ifas_eval.protocols import EMBEDDED_SAMPLE, Protocol, Selection, TestSet

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import pyarrow as pa
    import torch

logger = logging.getLogger(__name__)


def column_arrays(ds: datasets.Dataset, names: list[str] | tuple[str, ...]) -> dict[str, pa.ChunkedArray]:
    """Columns of ``ds`` as Arrow arrays (its row selection applied), read in one pass.

    ``Dataset.__getitem__`` on a column of a selected (indices-mapped) dataset builds Python objects row by
    row (about 4 s per 100k rows for the six metadata columns); one Arrow ``take`` is milliseconds.
    """
    table = ds.select_columns(list(names)).with_format("arrow")[:]
    return {name: table.column(name) for name in names}


def column_lists(ds: datasets.Dataset, names: list[str] | tuple[str, ...]) -> dict[str, list]:
    """Columns of ``ds`` as Python lists (`column_arrays`, then one conversion per column)."""
    return {name: array.to_pylist() for name, array in column_arrays(ds, names).items()}


@dataclass
class RowSet:
    """Rows selected for a test (or dev) set, with where each came from.

    Attributes:
        ds: the rows (benchmark schema).
        origins: per row, ``(dataset, split, row index in that split)``; the dataset is the folder or Hub
            id it was loaded from.
    """

    ds: datasets.Dataset
    origins: list[tuple[str, str, int]]

    def keep(self, indices: list[int]) -> RowSet:
        """The rows at ``indices`` (in that order)."""
        if len(indices) == len(self.origins):
            return self
        return RowSet(self.ds.select(indices), [self.origins[i] for i in indices])

    def where(self, i: int) -> str:
        """``dataset [split] row N (path P)``: a row named for a message."""
        table, split, row = self.origins[i]
        path = self.ds.select_columns(["path"])[i]["path"] if "path" in self.ds.column_names else ""
        return f"{table} [{split}] row {row}" + (f" (path {path})" if path else "")


@dataclass
class BenchmarkData:
    """One or more benchmark tables (`scf.schema.load_table` results) from which protocol rows are selected.

    Attributes:
        origin: what was loaded (a path, Hub id, or "embedded sample"), for messages.
        tables: ``(name, DatasetDict)`` pairs; a source may live in any of them.
    """

    origin: str
    tables: list[tuple[str, datasets.DatasetDict]]
    _sources: dict[tuple[str, str], pa.ChunkedArray] = field(default_factory=dict, init=False, repr=False)

    def _source_column(self, table_name: str, split: str, ds: datasets.Dataset) -> pa.ChunkedArray:
        """The ``source`` column of one split, read once per (table, split) and kept for the next test sets."""
        key = (table_name, split)
        if key not in self._sources:
            self._sources[key] = column_arrays(ds, ["source"])["source"]
        return self._sources[key]

    def select(self, parts: tuple[Selection, ...], what: str) -> datasets.Dataset:
        """Rows of the given sources and splits, concatenated in (table, split, row) order.

        Raises:
            ValueError: no row matches (the test set is named with what was looked for).
        """
        return self.select_rows(parts, what).ds

    def select_rows(self, parts: tuple[Selection, ...], what: str) -> RowSet:
        """Like `select`, keeping where each row comes from (table, split, row index) for messages.

        Each split's ``source`` column is read once per `BenchmarkData` (not once per test set).
        """
        import datasets
        import pyarrow.compute as pc

        pieces = []
        origins: list[tuple[str, str, int]] = []
        for table_name, table in self.tables:
            for sel in parts:
                for split in sel.splits:
                    if split not in table:
                        continue
                    ds = table[split]
                    match = pc.fill_null(pc.equal(self._source_column(table_name, split, ds), sel.source), False)
                    idx = np.flatnonzero(match.to_numpy())
                    if idx.size:
                        pieces.append(ds.select(idx))
                        origins += zip([table_name] * idx.size, [split] * idx.size, idx.tolist(), strict=True)
        if not pieces:
            wanted = " + ".join(p.describe() for p in parts)
            raise ValueError(f"{what}: no rows of {wanted} in {self.origin} (sources there: "
                             f"{', '.join(self.sources()) or 'none'})")
        return RowSet(pieces[0] if len(pieces) == 1 else datasets.concatenate_datasets(pieces), origins)

    def sources(self) -> list[str]:
        """Distinct ``source`` values over every table and split."""
        found: set[str] = set()
        for _, table in self.tables:
            for ds in table.values():
                found.update(ds.unique("source"))
        return sorted(found)


def _is_table_folder(path: Path) -> bool:
    # a README.md alone does not make a dataset: `scf ingest --config NAME` writes one into the parent folder
    return ((path / "dataset_dict.json").exists() or (path / "state.json").exists() or (path / "data").is_dir()
            or any(path.glob("*.parquet")))


def load_benchmark(data: str | None, protocol: Protocol, needed_sources: list[str] | None = None) -> BenchmarkData:
    """Load the benchmark data a protocol is evaluated on.

    Args:
        data: a dataset folder (parquet shards in the Hub layout, or ``save_to_disk``), a folder whose
            subfolders are such datasets (one per source), a Hub id ``org/name`` (each source tried as a
            config name first, then the default config), or None for the protocol's ``default_data``
            (``embedded-sample``: `scf.sample.build_sample` in process).
        protocol: the protocol (for its default data).
        needed_sources: the sources to load configs of, for Hub ids.

    Raises:
        ValueError / FileNotFoundError: nothing to load (the message says what was tried).
    """
    from scf.schema import load_table

    if data is None:
        if protocol.default_data == EMBEDDED_SAMPLE:
            from scf.sample import build_sample

            logger.info("data: the embedded SYNTHETIC sample (scf.sample.build_sample(seed=0))")
            return BenchmarkData("the embedded synthetic sample", [("embedded sample", build_sample(0))])
        raise ValueError(f"protocol {protocol.name!r} needs --data (a benchmark dataset folder or Hub id "
                         "written by `scf ingest`)")
    path = Path(data).expanduser()
    if path.is_dir():
        if _is_table_folder(path):
            return BenchmarkData(str(path), [(str(path), load_table(str(path)))])
        from scf.schema import is_hidden_from_loaders  # a push's staged copy (.a.hub-upload) is not a source

        subs = sorted(p for p in path.iterdir()
                      if p.is_dir() and not is_hidden_from_loaders(p) and _is_table_folder(p))
        if not subs:
            raise ValueError(f"{path}: neither a benchmark dataset folder nor a folder of them (one per source)")
        return BenchmarkData(str(path), [(str(p), load_table(str(p))) for p in subs])
    if path.exists():
        raise ValueError(f"{path}: --data must be a dataset folder or a Hub id, not a file")
    tables = []
    for source in needed_sources or []:
        try:
            tables.append((source, load_table(data, name=source)))
        except (ValueError, FileNotFoundError) as e:  # no such config: fall back to the default config below
            logger.debug("no config %r in %s: %s", source, data, e)
    if not tables:
        tables.append((data, load_table(data)))
    return BenchmarkData(data, tables)


def checkpoint_tag(path: str, taken: set[str]) -> str:
    """A short file-name-safe tag of a checkpoint path (its last two components), unique within ``taken``."""
    parts = [p for p in Path(path).parts if p not in ("/", ".")]
    tag = re.sub(r"[^A-Za-z0-9_.+-]+", "_", "-".join(parts[-2:]) or "checkpoint")
    base, i = tag, 1
    while tag in taken:
        i += 1
        tag = f"{base}-{i}"
    taken.add(tag)
    return tag


SCORE_RECORD = "scored_with.json"
"""The file in each score folder that records which weights and settings wrote its score files."""
_RECORD_FORMAT = 1
_IGNORED_FILES = ("README.md",)  # the model card: never read by from_pretrained


def checkpoint_folder(spec: str) -> Path | None:
    """The local folder holding a checkpoint's files: the path itself, or for a Hub id its snapshot in the
    Hugging Face cache (None when it is not there)."""
    if _looks_like_path(spec):
        return Path(spec).expanduser().resolve()
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(spec, "config.json")
    except Exception as e:  # noqa: BLE001 - an id the cache does not know: no fingerprint, so no reuse
        logger.debug("no cached snapshot of %s: %s", spec, e)
        return None
    return Path(found).parent if isinstance(found, str) else None


_CARD_CONFIG = re.compile(r"^## Training configuration\s*$.*?^```yaml\s*$\n(.*?)^```\s*$", re.M | re.S)


def _seed_of(mapping: Any) -> int | None:
    seed = mapping.get("seed") if isinstance(mapping, dict) else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _read_yaml_seed(path: Path, card: bool) -> int | None:
    """The ``seed`` of an ifas-train ``config.yaml`` or of the configuration block of its model card."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        if card:
            match = _CARD_CONFIG.search(text)
            if match is None:
                return None
            text = match.group(1)
        doc = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        logger.warning("%s: not readable (%s); the checkpoint's training seed is left empty", path,
                       str(e).splitlines()[0] if str(e) else type(e).__name__)
        return None
    if not card and not (isinstance(doc, dict) and "output_dir" in doc):
        return None  # some other config.yaml next to the checkpoint: not an ifas-train run's
    return _seed_of(doc)


def training_seed(spec: str) -> tuple[int | None, str | None]:
    """The training seed of a checkpoint, and the file it was read from; ``(None, None)`` when unknown.

    ``ifas-train`` records ``seed`` in two places, both plain YAML (nothing is unpickled or imported):

    1. the model card ``README.md`` in ``<run>/final`` (its "Training configuration" block), which travels with
       the weights (also to the Hub: a Hub id's card is read from the local Hugging Face cache when it is
       there; nothing is downloaded for it);
    2. the run's ``config.yaml``: ``<run>/config.yaml`` for ``<run>/final``, and for
       ``<run>/checkpoints/step-N`` too.

    The card wins when both are there; when they disagree (a ``final/`` copied next to another run's
    ``config.yaml``) a warning names both. A checkpoint with neither (a Hub model whose card is not cached, a
    folder saved by ``save_pretrained`` alone) has no known seed.
    """
    folder = checkpoint_folder(spec)
    if folder is None or not folder.is_dir():
        return None, None
    found: list[tuple[int, Path]] = []
    card = folder / "README.md"
    if card.is_file():
        seed = _read_yaml_seed(card, card=True)
        if seed is not None:
            found.append((seed, card))
    if _looks_like_path(spec):
        runs = [folder.parent] + ([folder.parent.parent] if folder.parent.name == "checkpoints" else [])
        for run in runs:
            config = run / "config.yaml"
            if config.is_file():
                seed = _read_yaml_seed(config, card=False)
                if seed is not None:
                    found.append((seed, config))
                    break
    if not found:
        return None, None
    if len({s for s, _ in found}) > 1:
        logger.warning("checkpoint %s: its model card says seed %d but %s says seed %d; using the card's", spec,
                       found[0][0], found[1][1], found[1][0])
    return found[0][0], str(found[0][1])


HASH_CACHE_ENV = "IFAS_EVAL_CACHE"
"""Environment variable naming the folder of ifas-eval's file-hash cache (default ``~/.cache/ifas-eval``)."""


def hash_cache_path() -> Path:
    """``fingerprints.json`` in ``$IFAS_EVAL_CACHE``, else in ``$XDG_CACHE_HOME/ifas-eval`` or ``~/.cache/ifas-eval``."""
    import os

    root = os.environ.get(HASH_CACHE_ENV)
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ifas-eval")
    return Path(root).expanduser() / "fingerprints.json"


def _read_hash_cache() -> dict[str, dict[str, Any]]:
    import json

    try:
        cache = json.loads(hash_cache_path().read_text())
    except (OSError, ValueError):  # none yet, or unreadable: it is only a cache
        return {}
    return cache if isinstance(cache, dict) else {}


def _write_hash_cache(cache: dict[str, dict[str, Any]]) -> None:
    import json
    import re

    from ifas_eval.outputs import sweep_temporaries
    from scf.shards import write_text_atomic

    path = hash_cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a killed run's temporary (no lock here: only those of processes no longer running, `sweep_temporaries`)
        sweep_temporaries(path.parent, re.compile(re.escape(path.name)), locked=False)
        write_text_atomic(path, json.dumps(cache))  # a full disk: no half-written temporary left behind
    except OSError as e:  # a read-only home: hashes are computed again next time
        logger.debug("cannot write the hash cache %s: %s", path, e)


def checkpoint_fingerprint(folder: Path, known: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """SHA-256 of every file of a checkpoint folder that ``from_pretrained`` reads (weights, configs, processor).

    Every top-level file except the model card (``README.md``) and hidden files is hashed in full, so two
    checkpoints agree only when their weights, model config and processor (prompt, image transform,
    tokenizer) are byte for byte the same; a copy or a move of the folder keeps its fingerprint. Hashing costs
    1-2 s per GB read, once per file: a file whose size and modification time (ns) are unchanged takes its hash
    from ``known`` (an earlier result for the same folder) or from the per-user cache (`hash_cache_path`,
    keyed by the file's resolved path), so evaluating the same checkpoint into another ``--out`` reads nothing.

    Returns:
        ``{"sha256": digest over the files, "files": {name: {"size", "mtime_ns", "sha256"}}}``.
    """
    import hashlib

    cache = _read_hash_cache()
    cache_changed = False
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name in _IGNORED_FILES:
            continue
        st = path.stat()
        key = str(path.resolve())
        digest = None
        for old in ((known or {}).get(path.name), cache.get(key)):
            if old and old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns and old.get("sha256"):
                digest = old["sha256"]
                break
        if digest is None:
            digest = _sha256_file(path)
        files[path.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        if cache.get(key) != files[path.name]:
            cache[key] = files[path.name]
            cache_changed = True
    if cache_changed:
        _write_hash_cache(cache)
    total = hashlib.sha256("".join(f"{name}\0{f['sha256']}\n" for name, f in files.items()).encode())
    return {"sha256": total.hexdigest(), "files": files}


_HASH_CHUNK = 1 << 20


def _sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (``hashlib.file_digest`` is Python 3.11+; 3.10 is supported)."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def score_record(checkpoint: str, model: Any, *, normalize: str, exclusions: str | None,
                 known: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a score folder's files depend on: the checkpoint's fingerprint (`checkpoint_fingerprint`), the
    dtype the model was loaded in, the normalisation and the exclusion lists.

    ``known``: the score folder's previous record; its per-file hashes are reused for unchanged files of the
    same folder. A checkpoint without a local folder (a Hub id not in the cache) has ``weights`` None, and
    its scores are never reused.
    """
    folder = checkpoint_folder(checkpoint)
    fingerprint = None
    if folder is not None and folder.is_dir():
        same_folder = known is not None and known.get("folder") == str(folder)
        fingerprint = checkpoint_fingerprint(folder, known.get("files") if same_folder else None)
    return {"format": _RECORD_FORMAT, "checkpoint": checkpoint, "folder": str(folder) if folder else None,
            "weights": fingerprint["sha256"] if fingerprint else None,
            "files": fingerprint["files"] if fingerprint else {},
            "dtype": str(model.dtype).removeprefix("torch."), "normalize": normalize, "exclusions": exclusions}


def _record_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    if old.get("format") != new["format"]:
        return [f"record format {old.get('format')} (now {new['format']})"]
    diffs = []
    if new["weights"] is None or old.get("weights") != new["weights"]:
        changed = sorted(n for n in set(old.get("files") or {}) | set(new["files"])
                         if (old.get("files") or {}).get(n, {}).get("sha256") != new["files"].get(n, {}).get("sha256"))
        diffs.append(f"other checkpoint files ({', '.join(changed) or 'not hashable'}; then {old.get('checkpoint')})")
    for key in ("dtype", "normalize", "exclusions"):
        if old.get(key) != new[key]:
            diffs.append(f"{key} {old.get(key)} (now {new[key]})")
    return diffs


def read_score_record(path: Path) -> dict[str, Any] | None:
    """A score folder's `SCORE_RECORD`, None when absent or unreadable."""
    import json

    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def score_folder_for(parent: Path, tag: str, suffix: str, record: dict[str, Any], used: set[Path]) -> Path:
    """The score folder of one checkpoint under ``parent`` (``<tag><suffix>``, else ``<tag>-2<suffix>``, ...).

    A folder is taken when it holds no score files, or when its `SCORE_RECORD` shows the same checkpoint
    files (its scores are reused), or the same checkpoint folder with the same dtype, normalisation and
    exclusions (a checkpoint retrained in place: its stale scores are replaced). A folder whose scores another
    checkpoint wrote (another model whose last two path components match, the same model in another
    ``--dtype``), or an older ifas-eval without a record, is left as it is: its scores are never deleted for
    another model, and the next free name is used. ``used``: folders given to other checkpoints of this run.
    """
    i = 1
    while True:
        folder = parent / (f"{tag}{suffix}" if i == 1 else f"{tag}-{i}{suffix}")
        i += 1
        if folder in used:
            continue
        has_scores = any(folder.glob("*.csv")) or any(folder.glob("*.csv.partial"))
        old = read_score_record(folder / SCORE_RECORD) if has_scores else None
        settings_same = old is not None and all(old.get(k) == record[k] for k in ("dtype", "normalize", "exclusions"))
        same_weights = old is not None and record["weights"] is not None and old.get("weights") == record["weights"]
        same_folder = old is not None and record["folder"] is not None and old.get("folder") == record["folder"]
        if not has_scores or (settings_same and (same_weights or same_folder)):
            used.add(folder)
            return folder
        logger.info("%s: holds scores of %s; using the next free score folder", folder,
                    "another checkpoint or setting" if old is not None else "an older ifas-eval (no record)")


def prepare_score_folder(folder: Path, record: dict[str, Any]) -> bool:
    """Make ``folder``'s score files safe to reuse with the model of ``record`` (`score_record`).

    Score files (finished ``*.csv`` and ``*.csv.partial``) are kept only when the folder's `SCORE_RECORD`
    says they were written with the same checkpoint fingerprint, dtype, normalisation and exclusions. Else
    they are deleted with a warning that says why, and scored again; `score_folder_for` picks ``folder`` so
    that this happens only to a checkpoint retrained in place (never to another checkpoint's scores). The new
    record is written before any score.

    Returns:
        True when the folder's score files are reused (logged as such).
    """
    import json

    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / SCORE_RECORD
    scores = sorted([*folder.glob("*.csv"), *folder.glob("*.csv.partial")])
    old: dict[str, Any] | None = None
    if record_path.exists():
        try:
            old = json.loads(record_path.read_text())
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (ValueError, OSError) as e:
            logger.warning("%s: unreadable (%s): the score files beside it are not trusted", record_path, e)
            old = None
    reused = False
    if scores:
        diffs = _record_differences(old, record) if old is not None else ["no record of the model that wrote them"]
        if diffs:
            logger.warning("%s: %d score file(s) written with %s: scoring again with %s", folder, len(scores),
                           "; ".join(diffs), record["checkpoint"])
            for f in scores:
                f.unlink()
        else:
            reused = True
            logger.info("%s: reusing score files computed with the same checkpoint files (sha256 %s), dtype %s, "
                        "normalize %s%s (delete the folder to score again)", folder, record["weights"][:12],
                        record["dtype"], record["normalize"],
                        f", checkpoint then {old['checkpoint']}" if old["checkpoint"] != record["checkpoint"] else "")
    from ifas_eval.outputs import write_text_atomic

    write_text_atomic(record_path, json.dumps(record, indent=2))  # its temporary is removed if it fails
    return reused


def safe_name(name: str) -> str:
    """A test-set or setting name usable as a file name."""
    return re.sub(r"[^A-Za-z0-9_.+&-]+", "_", name)


GPU_BATCH_SIZE = 256
"""Default images per scoring forward pass on a GPU (`tools/benchmark.py` measures scoring at this batch)."""
CPU_BATCH_SIZE = 32
"""Default images per scoring forward pass on CPU."""


def pick_device(device: str | torch.device = "auto", *, option: str | None = None) -> str:
    """Resolve and check a device: ``auto`` -> ``cuda`` when a CUDA GPU is available, else ``mps`` when
    Apple's Metal backend is (``torch.backends.mps.is_available()``: an Apple-silicon Mac), else ``cpu``.

    On MPS the model loads in float32 by default (`default_dtype`); that path is written for, not tested on,
    a Mac (this project's machines have no MPS): the model uses only standard torch operations, which the
    MPS backend implements.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` ..., or a ``torch.device``.
        option: the command-line option the value came from (``"--device"``), named in the messages of the
            commands; None (a Python call) names the argument instead: ``device 'cuda': ...``.

    Returns:
        The device as a string (``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...).

    Raises:
        ValueError: a device string torch does not parse, or a CUDA/MPS device this machine does not have;
            one line such as ``device 'cuda': no CUDA GPU is available (use cpu or auto)`` (from a command:
            ``--device cuda: ...``).
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    what = f"{option} {device}" if option else f"device {device!r}"
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu', 'cuda' or 'auto', or a torch.device, not "
                        f"{type(device).__name__}")
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"{what}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what}: no CUDA GPU is available (use cpu or auto)")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"{what}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif parsed.type == "mps":
        if not _mps_available():
            raise ValueError(f"{what}: Apple MPS is not available (use cpu or auto)")
    elif parsed.type != "cpu":
        raise ValueError(f"{what}: unsupported device type {parsed.type!r} (use auto, cpu, cuda, cuda:N or mps)")
    return device


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def default_dtype(device: str) -> str:
    """The dtype ``--dtype auto`` loads a model in on ``device``: bfloat16 on CUDA, float32 on CPU and MPS.

    On MPS, bfloat16 needs macOS 14 or later and float16 risks overflow in a model trained in bfloat16, so
    ``auto`` keeps float32 there (``--dtype float16`` halves the memory if it suits the checkpoint).
    """
    return "bfloat16" if str(device).startswith("cuda") else "float32"


def _looks_like_path(spec: str) -> bool:
    """A checkpoint argument meant as a local path: what the model loader takes for one
    (`ifas_model._loading.looks_like_local_path`), an existing path, or a bare name (an I-FAS checkpoint on
    the Hub is always ``org/name``)."""
    from ifas_model._loading import looks_like_local_path

    return looks_like_local_path(spec) or "/" not in spec or Path(spec).expanduser().exists()


def check_checkpoint(spec: str) -> None:
    """Cheap checks of a ``--checkpoint`` value before anything heavy runs.

    A local path must be a folder holding an I-FAS ``config.json`` (``model_type`` ``"ifas"``), no code of its
    own (`ifas_model._loading.refuse_remote_code`: no ``auto_map``, no ``*.py``) and safetensors weights (a
    ``pytorch_model.bin`` pickle is never loaded) whose headers promise no more bytes than the files hold. A
    value that is not a local path (``org/name``) is taken as a Hub id and left to `load_checkpoint`.

    Raises:
        FileNotFoundError: ``checkpoint folder not found: PATH``.
        ValueError: the path is a file, has no ``config.json``, holds another kind of model, asks for code of
            its own, or has no safetensors weights (pickled ones: the message says how to convert them), or
            weights cut short (a full disk during save_pretrained, a partial copy: `safetensors_problem`).
    """
    import json

    if not _looks_like_path(spec):
        return
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint folder not found: {spec}")
    if not path.is_dir():
        raise ValueError(f"checkpoint {spec}: a file, not a checkpoint folder (the folder save_pretrained wrote)")
    config = path / "config.json"
    if not config.is_file():
        if (path / "trainer_state.json").is_file():
            final = path.parent.parent / "final" if path.parent.name == "checkpoints" else None
            raise ValueError(f"checkpoint {spec}: a resume state of ifas-train (trainable weights and optimizer "
                             "only), not a model: use the run's final/ folder"
                             + (f" ({final})" if final is not None else ""))
        raise ValueError(f"checkpoint {spec}: no config.json: not a checkpoint folder (use <run>/final of "
                         "ifas-train; <run>/checkpoints/step-* are resume states, not models)")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (ValueError, AttributeError, OSError):
        raise ValueError(f"checkpoint {spec}: config.json is not a JSON object") from None
    if model_type is None:
        raise ValueError(f"checkpoint {spec}: config.json has no model_type: not an I-FAS checkpoint")
    if model_type != "ifas":
        raise ValueError(f"checkpoint {spec}: config.json has model_type {model_type!r}, not an I-FAS ('ifas') "
                         "checkpoint")
    from ifas_model._loading import is_lfs_pointer, refuse_remote_code

    refuse_remote_code(spec, "checkpoint")
    _refuse_pickled_weights(path, spec)
    for weights in sorted(path.glob("*.safetensors")):
        if is_lfs_pointer(weights):
            raise ValueError(f"checkpoint {spec}: {weights.name} is a Git LFS pointer, not the weights (a clone "
                             "without git-lfs): run `git lfs pull` in that repository, or download it with "
                             "`hf download`")
        problem = safetensors_problem(weights)
        if problem:
            raise ValueError(f"checkpoint {spec}: {weights.name} {problem}{_cut_short_advice(path)}")


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a ``.safetensors`` file, read from its header only (cheap: no tensor is loaded), or
    None when its header is whole and its size is what the header promises.

    A file cut short (a full disk during ``save_pretrained``, a partial copy or download) is ``is cut short
    (N of M bytes)``; a header that does not parse is ``is not a safetensors file (...)``.
    """
    import json
    import struct

    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"is cut short ({size} bytes, not even a header)"
            (header_len,) = struct.unpack("<Q", head)
            if 8 + header_len > size:
                return f"is cut short ({size} bytes; its header alone needs {8 + header_len})"
            header = json.loads(fh.read(header_len))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        return f"is not a safetensors file (its header does not parse: {type(e).__name__})"
    expected = 8 + header_len + max(ends, default=0)
    if size < expected:
        return f"is cut short ({size} of {expected} bytes)"
    return None


def _cut_short_advice(folder: Path) -> str:
    """What to do about a checkpoint whose weights are cut short: an ifas-train run's ``final/`` is written
    again by rerunning that run (nothing else is redone); anything else is copied or saved again."""
    advice = " (a full disk or a partial copy?)"
    if folder.name == "final" and (folder.parent / "checkpoints").is_dir():
        return (f"{advice}: rerun the same ifas-train command for run {folder.parent}: it writes only final/ "
                "again")
    return f"{advice}: copy or save the checkpoint again"


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _refuse_pickled_weights(folder: Path, spec: str) -> None:
    """A folder whose weights are pickles only (``pytorch_model.bin``) is refused with how to convert it."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(f"checkpoint {spec}: weights only as a pickle ({', '.join(pickles[:3])}), and pickled "
                         "weights are never loaded (unpickling can run code); convert them once, where you trust "
                         "the file: IFASForConditionalGeneration.from_pretrained(folder, use_safetensors=False)"
                         ".save_pretrained(folder, safe_serialization=True)")
    raise ValueError(f"checkpoint {spec}: no model.safetensors: the weights are missing (save_pretrained writes "
                     "them)")


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "auto",
                    dtype: str | torch.dtype = "auto") -> tuple[Any, Any]:
    """Load an I-FAS model and processor saved by ``save_pretrained`` (safetensors; no remote code).

    Args:
        path: a checkpoint folder (e.g. ``<run>/final``, a string or a ``Path``) or a Hub id.
        device: ``auto`` (`pick_device`), ``cpu``, ``cuda``, ``cuda:1``, ``mps`` ..., or a ``torch.device``.
        dtype: ``auto`` (bfloat16 on CUDA, float32 on CPU and MPS), ``float32``, ``bfloat16`` or ``float16`` (or the
            short forms ``fp32``, ``bf16``, ``fp16``), or ``torch.float32`` / ``torch.bfloat16`` /
            ``torch.float16``.

    Returns:
        ``(model, processor)``, the model in eval mode on ``device``.

    Raises:
        FileNotFoundError / ValueError: a bad device or dtype, or a local path that is not an I-FAS
            checkpoint folder (`pick_device`, `canonical_dtype`, `check_checkpoint`); a Hub checkpoint that
            asks for code of its own.
    """
    import torch
    from safetensors import SafetensorError

    from ifas_model._loading import NEVER_RUN, refuse_remote_code
    from ifas_model.modeling import IFASForConditionalGeneration
    from ifas_model.processing import IFASProcessor

    path = os.fspath(path)
    device = pick_device(device)
    dtype = canonical_dtype(dtype)
    check_checkpoint(path)
    torch_dtype = getattr(torch, default_dtype(device) if dtype == "auto" else dtype)
    _quiet_transformers()
    try:
        model = IFASForConditionalGeneration.from_pretrained(path, dtype=torch_dtype, use_safetensors=True)
        if not _looks_like_path(path):  # a local folder was checked by check_checkpoint above
            folder = checkpoint_folder(path)  # a Hub id: what its snapshot holds so far (config, weights)
            if folder is not None and folder.is_dir():
                refuse_remote_code(folder, "checkpoint")
        processor = IFASProcessor.from_pretrained(path)
    except (ValueError, OSError, SafetensorError) as e:
        if "trust_remote_code" in str(e):  # a Hub checkpoint asking for its own code: never "pass it True"
            raise ValueError(f"checkpoint {path}: asks for Python code of its own (auto_map); {NEVER_RUN}") from None
        if isinstance(e, SafetensorError) or "safetensors" in str(e).lower():
            # e.g. "Error while deserializing header: incomplete metadata" from weights cut short; name them
            folder = Path(path) if _looks_like_path(path) else checkpoint_folder(path)
            advice = _cut_short_advice(folder) if folder is not None else " (a partial download?)"
            raise ValueError(f"checkpoint {path}: its safetensors weights cannot be read ({' '.join(str(e).split())})"
                             f"{advice}") from None
        raise
    model.to(device).eval()
    return model, processor


DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
"""The short ``--dtype`` forms that ``scf caption`` uses, and the torch names they stand for."""


DTYPES = ("auto", "float32", "bfloat16", "float16")
"""The dtypes a checkpoint is loaded in (`canonical_dtype`'s results)."""


def canonical_dtype(dtype: str | torch.dtype) -> str:
    """A dtype name of `DTYPES`: ``bf16`` -> ``bfloat16``, ``fp16`` -> ``float16``, ``fp32`` -> ``float32``,
    ``torch.bfloat16`` -> ``bfloat16`` ...; the names of `DTYPES` unchanged.

    Raises:
        ValueError: any other value, e.g. ``"half"`` or ``torch.float64``; the message lists what is accepted.
    """
    torch = sys.modules.get("torch")  # a torch.dtype exists only once torch is imported: no import here
    if torch is not None and isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
    elif isinstance(dtype, str):
        name = DTYPE_ALIASES.get(dtype, dtype)
    else:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (or {', '.join(DTYPE_ALIASES)}, or "
                         f"torch.float32 / torch.bfloat16 / torch.float16), got {dtype!r}")
    return name


def _quiet_transformers() -> None:
    """No tqdm bars from transformers ("Loading weights") between the rich progress and log lines."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


class CorruptImageError(ValueError):
    """An image of a benchmark row cannot be decoded; the message names dataset, split, row and path."""


def _decode(cell: Any) -> Any:
    """A raw ``image`` cell (``{"bytes", "path"}``, decode off) as an RGB PIL image."""
    import io

    from PIL import Image

    from scf.imaging import to_rgb

    if isinstance(cell, dict):
        data, path = cell.get("bytes"), cell.get("path")
        source = io.BytesIO(data) if data else path
        if source is None:
            raise ValueError("empty image cell")
        with Image.open(source) as im:
            im.load()
            return Image.fromarray(to_rgb(im))
    return Image.fromarray(to_rgb(cell))  # already decoded (a PIL image)


def _raw_images(ds: datasets.Dataset) -> datasets.Dataset:
    """The ``image`` column with decoding off, so that each row is decoded (and can fail) on its own."""
    import datasets

    col = ds.select_columns(["image"])
    feature = col.features["image"]
    if isinstance(feature, datasets.Image) and feature.decode:
        col = col.cast_column("image", datasets.Image(decode=False))
    return col


def _reason(e: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):
        return "not a decodable image"
    text = " ".join(str(e).split())
    return text[:120] or e.__class__.__name__


def _images(rows: RowSet, raw: datasets.Dataset, start: int, stop: int) -> list[Any]:
    out = []
    for i, cell in enumerate(raw[start:stop]["image"], start=start):
        try:
            out.append(_decode(cell))
        except Exception as e:  # noqa: BLE001 - any decoder failure is a corrupt row, named below
            raise CorruptImageError(f"{rows.where(i)}: corrupt image ({_reason(e)}); --skip-corrupt skips and "
                                    "counts such images") from None
    return out


def find_corrupt(rows: RowSet, progress: Any = None, what: str = "") -> list[int]:
    """Indices of rows whose image does not decode (`ifas-eval --skip-corrupt` leaves them out)."""
    raw = _raw_images(rows.ds)
    bad = []
    task = progress.add_task(f"check images {what}".strip(), total=len(raw)) if progress is not None else None
    for lo in range(0, len(raw), 256):
        for i, cell in enumerate(raw[lo:lo + 256]["image"], start=lo):
            try:
                _decode(cell)
            except Exception as e:  # noqa: BLE001 - counted and reported, not fatal
                logger.debug("corrupt image at %s: %s", rows.where(i), e)
                bad.append(i)
        if task is not None:
            progress.update(task, advance=min(256, len(raw) - lo))
    return bad


def _meta_rows(ds: datasets.Dataset) -> tuple[list[int], list[str], list[str], list[int], list[str]]:
    cols = column_lists(ds, ["label", "video_id", "attack_type", "frame_index", "path", "source"])
    videos = [f"{s}/{v}" if not v.startswith(f"{s}/") else v for s, v in zip(cols["source"], cols["video_id"],
                                                                             strict=True)]
    return cols["label"], videos, cols["attack_type"], cols["frame_index"], cols["path"]


class _BatchBuffer:
    """One batch's tensors, filled chunk by chunk by the prefetch threads (each writes its own rows).

    The first chunk to arrive allocates, in its own thread, one tensor per key for the whole batch (pinned
    when ``pin``: a pinned host tensor is what makes ``.to(device, non_blocking=True)`` a true asynchronous
    copy); every chunk then copies its rows into its slice. The values are those of ``torch.cat`` of the
    chunks, so the consumer's thread only takes the finished tensors. One chunk spanning the whole batch
    (``threads=0``) is used as it is when nothing is to be pinned.
    """

    def __init__(self, size: int, pin: bool) -> None:
        import threading

        self.size, self.pin = size, pin
        self.tensors: dict[str, torch.Tensor] | None = None
        self._lock = threading.Lock()

    def take(self) -> dict[str, torch.Tensor]:
        """The finished tensors, handed over (the buffer keeps no reference to them)."""
        tensors, self.tensors = self.tensors, None
        if tensors is None:
            raise RuntimeError("a batch's tensors were taken twice or never filled")
        return tensors

    def put(self, offset: int, parts: dict[str, torch.Tensor]) -> None:
        """Write one chunk's tensors (first dimension = its rows) at row ``offset`` of the batch."""
        import torch

        with self._lock:
            if self.tensors is None:
                if offset == 0 and not self.pin and all(len(v) == self.size for v in parts.values()):
                    self.tensors = parts  # the whole batch in one chunk: nothing to copy
                    return
                self.tensors = {k: torch.empty((self.size, *v.shape[1:]), dtype=v.dtype, pin_memory=self.pin)
                                for k, v in parts.items()}
        for k, v in parts.items():
            out = self.tensors[k]
            if out.shape[1:] != v.shape[1:] or out.dtype != v.dtype:
                raise ValueError(f"the processor gave {k} of shape {tuple(v.shape)} ({v.dtype}) for rows "
                                 f"{offset}-{offset + len(v)} of a batch whose other rows have "
                                 f"{tuple(out.shape[1:])} ({out.dtype})")
            out[offset:offset + len(v)].copy_(v)


def _prepared_batches(rows: RowSet, raw: datasets.Dataset, processor: Any, bounds: list[tuple[int, int]],
                      threads: int, pin: bool = False) -> Any:
    """The processor's CPU tensors of each ``(lo, hi)`` batch of rows, in order.

    ``threads`` = 0 prepares each batch when it is asked for. Otherwise a pool of ``threads`` threads decodes
    and preprocesses the next batches in chunks of 32 while the model scores the current one (PIL's decoding
    and resizing and numpy release the GIL), so that on a GPU the image pipeline does not leave it idle; at
    most two batches are prepared ahead. The threads also build each batch's tensors (`_BatchBuffer`: each
    chunk copied into its rows of one tensor per key, pinned when ``pin``, i.e. on CUDA), so the consumer's
    thread does no per-image or per-pixel work at all. The tensors equal those of one `processor` call on the
    whole batch. A batch handed out is held by the caller only, so it is freed (or, pinned, returned to
    torch's pinned-memory cache) as soon as the caller drops it.
    """
    from functools import partial

    from scf.prefetch import prefetched

    def prepare(batch: _BatchBuffer, lo: int, a: int, b: int) -> _BatchBuffer:
        batch.put(a - lo, dict(processor(_images(rows, raw, a, b))))
        return batch

    def tasks(bound: tuple[int, int]) -> list[Any]:
        lo, hi = bound
        size = 32 if threads > 0 else max(1, hi - lo)
        batch = _BatchBuffer(hi - lo, pin)
        return [partial(prepare, batch, lo, a, min(hi, a + size)) for a in range(lo, hi, size)]

    for parts in prefetched(bounds, tasks, threads):
        # every task of a batch returns its (now filled) buffer; the batch is then held by the caller only
        # (not by this generator or the prefetcher's futures), so it is freed as soon as the caller drops it
        yield parts[0].take()


def _one_batch_late(jobs: Iterable[Any], launch: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
    """``(job, launch(job))`` for each job in order, each handed out only once the next job is launched.

    On a GPU, `launch` queues a batch's copy and forward pass and returns at once; reading its scores back
    waits for that batch. Handing batch i out after batch i+1 is queued lets the GPU compute batch i+1 while
    the caller reads and writes batch i's scores, instead of idling until the next launch. When getting or
    launching the next job fails (a corrupt image, an interrupt), the launched batch is still handed out
    before the error is raised, so everything scored before the failing batch is written, as without the
    delay.
    """
    pending = None
    try:
        for job in jobs:
            launched = (job, launch(job))
            if pending is not None:
                yield pending
            pending = launched
    except GeneratorExit:  # the caller stopped: nothing more to hand out
        raise
    except BaseException:
        if pending is not None:
            done, pending = pending, None
            yield done
        raise
    if pending is not None:
        yield pending


def score_test_set(model: Any, processor: Any, ds: RowSet | datasets.Dataset, name: str, out_csv: Path, *,
                   batch_size: int, progress: Any = None, normalize: str = "vocab",
                   decode_threads: int | None = None) -> ScoreSet:
    """Score every frame of a test set, appending to ``out_csv`` as batches finish (resumable).

    Images are decoded row by row: a corrupt one stops the run with a `CorruptImageError` naming its
    dataset, split, row and ``path`` (leave such rows out beforehand with `find_corrupt`).

    Args:
        model: the I-FAS model.
        processor: its processor.
        ds: the test set's rows (benchmark schema), preferably a `RowSet` (its origins name corrupt rows).
        name: the test set's name.
        out_csv: the final score file; ``<out_csv>.partial`` holds a run in progress.
        batch_size: images per forward pass.
        progress: a `rich.progress.Progress` to report on (optional).
        normalize: how P(real) is read (`ifas_model.inference.score_images`): "vocab" = P(" Yes") over the
            vocabulary (the paper's score), "yes_no" = P(" Yes") / (P(" Yes") + P(" No")).
        decode_threads: threads that decode and preprocess the next batches while the model scores
            (`_prepared_batches`); None = 8 (at most the CPU count) when the model is on a GPU, else 0.

    Returns:
        The `ScoreSet` read back from the finished score file.
    """
    import os

    import torch

    rows = ds if isinstance(ds, RowSet) else RowSet(ds, [(name, "?", i) for i in range(len(ds))])
    n = len(rows.ds)
    labels, videos, attacks, frames, paths = _meta_rows(rows.ds)
    if out_csv.exists():
        done = scorefile.read_scores(out_csv, name)
        if len(done) == n and list(done.video_ids) == videos:
            logger.info("%s: reusing %s (%d frames)", name, out_csv, n)
            if progress is not None:
                progress.add_task(f"{name} (cached)", total=n, completed=n)
            return done
        logger.warning("%s: %s holds other rows than the test set (%d rows, %d now): scoring again", name, out_csv,
                       len(done), n)
        out_csv.unlink()
    partial = out_csv.with_name(out_csv.name + ".partial")
    # cut back to whole batches: the resumed batches are an uninterrupted run's (same --batch-size), same scores
    start = scorefile.count_rows(partial, batch_size) if partial.exists() else 0
    if start > n or (start and list(scorefile.read_scores(partial, name).video_ids) != videos[:start]):
        logger.warning("%s: %s holds other rows than the test set: scoring from the start", name, partial)
        start = 0
    if start == 0:
        scorefile.write_header(partial)
    else:
        logger.info("%s: resuming after %d of %d frames", name, start, n)
    raw = _raw_images(rows.ds)
    task = progress.add_task(name, total=n, completed=start) if progress is not None else None
    device = model.get_input_embeddings().weight.device
    if decode_threads is None:
        decode_threads = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    model.eval()
    bounds = [(lo, min(n, lo + batch_size)) for lo in range(start, n, batch_size)]
    cuda = device.type == "cuda"
    batches = _prepared_batches(rows, raw, processor, bounds, decode_threads, pin=cuda)

    def launch(job: list) -> tuple[torch.Tensor, Any]:
        # queue the batch (pinned on CUDA, so the copies are asynchronous) and its scores' copy back; the
        # inputs are taken out of the job, so once launched nothing here keeps the batch's pixels alive
        inputs = job.pop()
        with torch.inference_mode():  # the pass of ifas_model.inference.score_images
            p_real = model.score(**{k: v.to(device, non_blocking=True) for k, v in inputs.items()},
                                 normalize=normalize).float()
            if not cuda:
                return p_real, None
            # into pinned memory (a pageable destination would make this copy wait for the batch here)
            scores = torch.empty(p_real.shape, dtype=p_real.dtype, pin_memory=True).copy_(p_real, non_blocking=True)
            done = torch.cuda.Event()
            # on the stream of the model's GPU, not of the current GPU: with --device cuda:N the copy above is
            # queued on cuda:N's stream, and an event on another GPU's stream would not wait for it
            done.record(torch.cuda.current_stream(p_real.device))
            return scores, done

    jobs = ([bound, inputs] for bound, inputs in zip(bounds, batches, strict=True))
    for ((lo, hi),), (p_real, done) in _one_batch_late(jobs, launch):
        if done is not None:
            done.synchronize()  # this batch only: the next one is already queued behind it
        scores = p_real.cpu().numpy().astype(np.float64)
        scorefile.append_rows(partial, zip(videos[lo:hi], labels[lo:hi], scores.tolist(), attacks[lo:hi],
                                           frames[lo:hi], paths[lo:hi], strict=True))
        if progress is not None:
            progress.update(task, advance=hi - lo)
    from ifas_eval.outputs import writing

    with writing(out_csv):
        partial.replace(out_csv)
    return scorefile.read_scores(out_csv, name)


def test_set_rows(data: BenchmarkData, test: TestSet) -> datasets.Dataset:
    """The rows of a protocol test set in the data (error naming the test set if none)."""
    return data.select(test.parts, f"test set {test.name!r}")


def throughput_progress() -> Any:
    """A rich progress bar (on stderr, so stdout stays JSON-clean) showing frames done, time and images/s."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class ImagesPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} images/s" if speed else "- images/s")

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), ImagesPerSecond(),
                    TimeElapsedColumn(), console=Console(stderr=True))
