"""The SCF pipeline (paper, Algorithm 1) as five resumable stages, run alone or in sequence by ``scf caption``.

Stages and their output folders under ``--out``:

1. ``general`` -> ``general/``: C_G's caption of each selected row (T_F for fakes, T_R for reals).
2. ``filter`` -> ``filter/``: the spoof-aware set D_S (fakes whose T_F holds a keyword of their own attack
   type) and the per-type statistics.
3. ``finetune`` -> ``finetune/`` (checkpoints, metrics) and ``captioner/`` (C_S, ``save_pretrained``).
4. ``spoof`` -> ``spoof/``: C_S's caption T_S of every fake.
5. ``corpus`` -> ``corpus/``: the VQA corpus (``corpus-general/`` or ``corpus-judgment/`` for the ablations).

``--split`` selects the part of Algorithm 1: ``fake`` = stages 1-4 on the fakes (lines 1-10 and T_S of
line 11); ``real`` = stage 1 on the reals (T_R of line 11); ``all`` = stage 1 on both, stages 2-4, and the
corpus (line 12). With ``--interpretation general`` or ``none`` the corpus needs no C_S, so ``all`` runs
only stages 1 and 5.

Captions are written in shards as they are produced (`scf.shards.ShardWriter`, keyed by a per-row id), so a
killed run resumes where it stopped. Under ``torchrun``/``accelerate launch`` every rank captions a disjoint
deterministic slice (row ``i`` goes to rank ``i % world_size``) into its own ``rank-NNNNN/`` shard folder;
the filter, the fine-tuning and the corpus run on rank 0 (the others wait at a gloo barrier), and the corpus
is written in dataset order whatever the number of ranks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scf.captioning.captioner import (
    Blip2Captioner,
    Captioner,
    DecodingConfig,
    check_blip2,
    check_device,
    load_blip2,
    pick_device,
)
from scf.captioning.corpus import CORPUS_DIRS, INTERPRETATIONS, dataset_card, vqa_row
from scf.captioning.finetune import FINETUNE_RECORD, FinetuneConfig
from scf.captioning.keywords import KeywordDictionary, load_keywords, suggest_keywords
from scf.hub import hf_upload_advice
from scf.schema import LABEL_NAMES, LABEL_REAL, SPOOF_TYPES, looks_local, software_versions

if TYPE_CHECKING:  # pragma: no cover
    import datasets

logger = logging.getLogger(__name__)

STAGES = ("general", "filter", "finetune", "spoof", "corpus")
SPLIT_CHOICES = ("fake", "real", "all")
CONFIG_FILE = "scf_caption_config.json"
CAPTIONER_DIR = "captioner"
DS_FILE = "d_s.jsonl"
STATS_FILE = "stats.json"
_COMPAT_KEYS = ("dataset", "captioner_general", "decoding", "keywords_fingerprint", "finetune",
                "finetune_splits", "finetune_exclude_sources")
D_S_FINGERPRINT_FILE = "d_s_fingerprint.json"
"""In ``finetune/``: the D_S that the checkpoints there are being trained on."""


_FLAGS = {"dataset": "--dataset", "captioner_general": "--captioner/--preset", "finetune_splits": "--finetune-splits",
          "finetune_exclude_sources": "--finetune-exclude-sources", "keywords_fingerprint": "--keywords",
          "decoding.prompt": "--prompt", "decoding.max_new_tokens": "--max-new-tokens",
          "decoding.min_new_tokens": "--min-new-tokens", "decoding.num_beams": "--num-beams",
          "finetune.learning_rate": "--lr", "finetune.epochs": "--epochs", "finetune.batch_size": "--ft-batch-size",
          "finetune.warmup_steps": "--warmup-steps", "finetune.lora_r": "--lora-r", "finetune.seed": "--seed"}
"""The flag of each compared setting; a recipe field without a flag (Python API only) is named by its key."""
_RESUME_FREE = {"finetune": ("checkpoint_every",)}
"""Recipe fields a resume may change: they change no caption and no weight (only how often a checkpoint is kept)."""


def _setting_diffs(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``--flag OLD there, NEW now`` for each compared setting (`_COMPAT_KEYS`, recipes field by field) that differs.

    A key missing from an older record is not compared.
    """
    diffs = []
    for key in _COMPAT_KEYS:
        if key not in old or (key == "dataset" and _same_dataset(old[key], new[key])):
            continue
        if isinstance(old[key], dict) and isinstance(new[key], dict):
            free = _RESUME_FREE.get(key, ())
            pairs = [(f"{key}.{k}", old[key].get(k), new[key].get(k)) for k in sorted(old[key].keys() | new[key].keys())
                     if k not in free]
        else:
            pairs = [(key, old[key], new[key])]
        for name, a, b in pairs:
            if a == b:
                continue
            if name == "keywords_fingerprint":
                diffs.append("--keywords: the keyword dictionary differs (see keywords in scf_caption_config.json)")
            else:
                diffs.append(f"{_FLAGS.get(name, name)} {a!r} there, {b!r} now")
    return diffs


class PipelineError(RuntimeError):
    """A user-facing failure of the SCF pipeline: the message says what to do."""


@dataclass(frozen=True)
class CaptionRunConfig:
    """Settings of one ``scf caption`` run (recorded in ``scf_caption_config.json``)."""

    out: Path
    """Output folder; each stage writes a subfolder."""
    dataset: str | None = None
    """Benchmark dataset: Hub id or local folder; None = the embedded sample (`scf.sample.build_sample`)."""
    captioner: str = "Salesforce/blip2-opt-2.7b"
    """C_G: Hub id, local folder, or ``tiny``."""
    split: str = "all"
    stage: str | None = None
    """Run only this stage; None = every stage of ``split``."""
    keywords_file: str | None = None
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    batch_size: int | None = None
    """Images per ``generate`` call; None = `scf.captioning.captioner.default_batch_size` of ``device``
    (256 on a CUDA GPU, 32 on CPU), as ``scf caption`` does. Resolved when the config is made."""
    dtype: str = "auto"
    """One of `scf.captioning.captioner.DTYPE_CHOICES`; kept (and recorded) in the short form: ``bfloat16`` is
    ``bf16``, so a resume may spell it either way."""
    load_in_8bit: bool = False
    device: str | None = None
    """A torch device string; None or ``auto``: `scf.captioning.captioner.pick_device`'s automatic choice."""
    interpretation: str = "spoof"
    shard_size: int = 1000
    dataset_splits: tuple[str, ...] | None = None
    """Dataset splits to caption; None = all."""
    finetune_splits: tuple[str, ...] = ("train",)
    """Splits whose fakes may enter D_S; falls back to all splits if none exists. This does not keep target
    domains out of C_S: a dataset tested on its train split too (MCIO) or pooled into D trains C_S."""
    finetune_exclude_sources: tuple[str, ...] = ()
    """``source`` values whose fakes never enter D_S, so C_S is not fine-tuned on them (a strict corpus per
    held-out target, e.g. ``("MSU-MFSD",)``); they are still captioned. The paper pools all of D instead."""
    push_to_hub: str | None = None
    push_captioner_to_hub: str | None = None
    show_progress: bool = True
    if_empty: str = "error"
    """What an empty D_S does: ``error`` (stop, naming the types and suggesting keywords), or ``general``:
    C_S cannot be trained, so fakes keep their general caption T_F (the captioner column says C_G). Meant for
    the tiny random captioner of the offline quick start, whose noise captions contain no keyword."""

    def __post_init__(self) -> None:
        if self.split not in SPLIT_CHOICES:
            raise PipelineError(f"--split must be one of {', '.join(SPLIT_CHOICES)}, got {self.split!r}")
        if self.stage is not None and self.stage not in STAGES:
            raise PipelineError(f"--stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.if_empty not in ("error", "general"):
            raise PipelineError(f"--if-empty must be 'error' or 'general', got {self.if_empty!r}")
        if self.interpretation not in INTERPRETATIONS:
            raise PipelineError(f"--interpretation must be one of {', '.join(INTERPRETATIONS)}")
        from scf.captioning.captioner import CaptionerError, canonical_dtype

        try:
            object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        except CaptionerError as e:
            raise PipelineError(f"--{e}") from e
        if self.batch_size is None:
            from scf.captioning.captioner import default_batch_size

            try:
                object.__setattr__(self, "batch_size", default_batch_size(self.device))
            except CaptionerError as e:
                raise PipelineError(str(e)) from e
        if self.batch_size < 1 or self.shard_size < 1:
            raise PipelineError("--batch-size and --shard-size must be >= 1")

    def stages(self) -> tuple[str, ...]:
        """The stages this run executes, in order."""
        if self.stage:
            return (self.stage,)
        if self.split == "real":
            return ("general",)
        if self.split == "fake":
            return ("general", "filter", "finetune", "spoof")
        if self.interpretation != "spoof":
            return ("general", "corpus")
        return STAGES


@dataclass(frozen=True)
class DistContext:
    """Rank and world size from the launcher's environment (``torchrun``, ``accelerate launch``)."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> DistContext:
        ctx = cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))
        if ctx.world_size > 1:
            import datetime

            import torch.distributed as dist

            if not dist.is_initialized():
                # Only barriers are exchanged, so gloo serves GPU runs too; rank 0 may fine-tune C_S for hours.
                dist.init_process_group("gloo", timeout=datetime.timedelta(hours=24))
        return ctx

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def from_main(self, text: str) -> str:
        """Rank 0's ``text`` on every rank (a collective: every rank calls it; the others' ``text`` is ignored).

        Sent as UTF-8 bytes in a tensor, so that an error only rank 0 can see (e.g. the output folder held by
        another run) stops every rank with the same message instead of leaving them at the next barrier.
        """
        if self.world_size == 1:
            return text
        import torch
        import torch.distributed as dist

        data = torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8)
        size = torch.tensor([data.numel()], dtype=torch.int64)
        dist.broadcast(size, 0)
        if not self.is_main:
            data = torch.zeros(int(size.item()), dtype=torch.uint8)
        if data.numel():
            dist.broadcast(data, 0)
        return bytes(data.tolist()).decode("utf-8")


# --- Stage outputs: caption shards keyed by a per-row id ------------------------------------------------

def row_key(split: str, source: str, path: str, frame_index: int) -> str:
    """The per-row id of the caption shards: dataset split, source, path and frame."""
    return f"{split}:{source}:{path}#{frame_index}"


def caption_features() -> datasets.Features:
    import datasets

    return datasets.Features({"key": datasets.Value("string"), "caption": datasets.Value("string")})


def write_captions(stage_dir: str | Path, split: str, pairs: Sequence[tuple[str, str]], rank: int = 0) -> None:
    """Write (key, caption) pairs into a caption stage folder, as a captioning rank would."""
    from scf.shards import ShardWriter

    with ShardWriter(Path(stage_dir) / f"rank-{rank:05d}", caption_features(), key_column="key") as w:
        w.add_many(({"key": k, "caption": c} for k, c in pairs), split)


def read_captions(stage_dir: str | Path) -> dict[str, str]:
    """All (key -> caption) of a caption stage folder, over every rank's shards."""
    from scf.shards import read_parquet

    out: dict[str, str] = {}
    for path in sorted(Path(stage_dir).glob("rank-*/data/*.parquet")):
        try:
            table = read_parquet(path, columns=["key", "caption"])
        except (OSError, ValueError) as e:
            raise PipelineError(f"{path}: unreadable caption shard ({type(e).__name__}: {e}); delete it and rerun: "
                                "its captions are redone") from e
        out.update(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))
    return out


@dataclass(frozen=True)
class _Item:
    split: str
    index: int
    key: str
    label: int
    attack_type: str
    path: str = ""
    source: str = ""


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def read_json(path: Path, remedy: str) -> Any:  # noqa: ANN401 - JSON value
    """Read one of the run's JSON state files; a torn or unreadable one raises `PipelineError` naming it.

    Args:
        path: the file.
        remedy: what the user should do about it, e.g. ``"delete it and rerun"``.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PipelineError(f"{path}: not valid JSON ({e}); {remedy}") from e


def _read_d_s(path: Path) -> list[dict[str, Any]]:
    """The D_S rows of ``filter/d_s.jsonl``; a torn file names itself (the filter stage rewrites it whole)."""
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PipelineError(f"{path}: not valid JSON lines ({e}); rerun without --stage (or with --stage "
                            "filter) to rewrite it") from e


def _write_json(path: Path, obj: Any) -> None:
    from scf.shards import write_text_atomic

    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True))


def _decode_batch(images_ds: datasets.Dataset, batch: Sequence[_Item]) -> tuple[list, tuple[_Item, Exception] | None]:
    """Decode the images of ``batch``; on a corrupt one, the images before it and (that row, the error).

    The whole batch is decoded at once (the fast path); only when that fails are the rows decoded one by one
    to find the first bad one.
    """
    try:
        return images_ds[[it.index for it in batch]]["image"], None
    except Exception:  # noqa: BLE001 - any decoding failure of a user's image; found and named below
        pass
    images = []
    for it in batch:
        try:
            images.append(images_ds[it.index]["image"])
        except Exception as e:  # noqa: BLE001 - PIL raises OSError, ValueError, DecompressionBombError, ...
            return images, (it, e)
    return images, None


def _decoded_batches(batches: list[tuple[datasets.Dataset, list[_Item]]], threads: int,
                     prepare: Callable[[list[Any]], Any] | None = None) -> Any:
    """`_decode_batch` of each ``(images, batch)`` in order, as ``(images, failure, prepared)``.

    ``threads`` = 0 decodes each batch when it is asked for. Otherwise ``threads`` threads decode the next
    batches in chunks of 32 while the captioner runs on the current one (`scf.prefetch.prefetched`), so that
    on a GPU decoding does not leave it idle. With ``prepare`` (the captioner's CPU preprocessing,
    `Blip2Captioner.prepare`) the threads also preprocess each decoded chunk, and ``prepared`` lists the
    results (else it is None): the main thread then only feeds the GPU. A chunk with a corrupt image ends its
    batch there, as `_decode_batch` does.
    """
    from functools import partial

    from scf.prefetch import prefetched

    def decode_and_prepare(images_ds: datasets.Dataset, chunk: list[_Item]) -> tuple[list, Any, Any]:
        images, failure = _decode_batch(images_ds, chunk)
        return images, failure, (prepare(images) if prepare is not None and images else None)

    def tasks(job: tuple[datasets.Dataset, list[_Item]]) -> list[Any]:
        images_ds, batch = job
        size = 32 if threads > 0 else max(1, len(batch))
        return [partial(decode_and_prepare, images_ds, batch[a:a + size]) for a in range(0, len(batch), size)]

    for parts in prefetched(batches, tasks, threads):
        images: list = []
        prepared: list[Any] = []
        failure = None
        for part, failure, ready in parts:
            images += part
            if ready is not None:
                prepared.append(ready)
            if failure is not None:
                break
        yield images, failure, (prepared if prepare is not None else None)


def _image_error(error: Exception) -> str:
    """PIL's message without the anonymous ``<_io.BytesIO object at 0x...>`` it names the file by."""
    import re

    text = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(error).splitlines()[0] if str(error) else "")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _check_local_dataset(dataset: str) -> None:
    """Refuse a ``--dataset`` that is a local path (``/``, ``.``, ``~``, or not of the form ``org/name``) naming
    nothing, before the captioner is looked up on the Hub (`scf.schema.load_table` reads the same forms)."""
    if Path(dataset).expanduser().exists():
        return
    if looks_local(dataset):
        raise PipelineError(f"dataset not found: {dataset} (not a local folder, nor a Hub id org/name)")


def _dataset_identity(dataset: str) -> str:
    """What identifies a dataset across reruns: the resolved folder of a local dataset, else the text (Hub id)."""
    path = Path(dataset).expanduser()
    return str(path.resolve()) if path.exists() else dataset


def _same_dataset(old: str, new: str) -> bool:
    """True when two recorded ``dataset`` values name the same dataset (a local folder given relative and
    absolute is one dataset; Hub ids compare as text). A relative path recorded by an earlier run is
    resolved against the current folder, as a rerun of the same command would be."""
    return old == new or _dataset_identity(old) == _dataset_identity(new)


def d_s_fingerprint(rows: Sequence[dict[str, Any]]) -> str:
    """SHA-256 of a spoof-aware set D_S: its (key, caption) pairs, sorted by key.

    Stored with C_S (``scf_finetune.json``) and with the fine-tuning checkpoints, so that a C_S trained on
    one D_S is never reused, or resumed, for another.
    """
    import hashlib

    pairs = sorted((str(r["key"]), str(r["caption"])) for r in rows)
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()


def _d_s_changed(where: Path, old_size: Any, size: int) -> str:
    return (f"{where} was fine-tuned on another spoof-aware set D_S ({old_size} samples then, {size} now in "
            f"filter/{DS_FILE}; --finetune-splits, --finetune-exclude-sources, --keywords, --split or the general "
            f"captions changed); use a new --out to train C_S on this D_S")


class CaptionPipeline:
    """Runs the SCF stages of a `CaptionRunConfig`.

    Args:
        config: the run settings.
        dataset: the benchmark dataset; None loads ``config.dataset`` (or the embedded sample).
        general_captioner: a ready C_G for the ``general`` stage (tests inject known captions this way);
            None loads ``config.captioner``.
        console: rich console for tables and rates.

    The output folder is held (`scf.locking.output_lock` on ``OUT/.lock``, rank 0 only) from construction until
    `run` returns or `close` is called (or a ``with`` block ends): a second pipeline on the same folder, in this
    process or another, raises `PipelineError` naming the holder.
    """

    def __init__(self, config: CaptionRunConfig, dataset: datasets.DatasetDict | None = None,
                 general_captioner: Captioner | None = None, console: Any = None) -> None:
        from rich.console import Console

        self.config = config
        self.out = Path(config.out)
        self.dist = DistContext.from_env()
        self.console = console or Console(stderr=True, quiet=not self.dist.is_main)
        self._general_captioner = general_captioner
        self.stages = config.stages()
        # Every check below is cheap and runs before any model is loaded; the local ones before the Hub is asked.
        if dataset is None and config.dataset is not None:
            _check_local_dataset(config.dataset)
        check_device(config.device)
        self.keywords: KeywordDictionary = load_keywords(config.keywords_file)
        if "finetune" in self.stages or ("general" in self.stages and general_captioner is None):
            check_blip2(config.captioner)
            if Path(config.captioner).expanduser().exists():
                self._check_utf8_path(Path(config.captioner).expanduser())
        if {"finetune", "spoof"} & set(self.stages) and config.if_empty == "error":
            self._check_utf8_path(self.out / CAPTIONER_DIR)  # C_S will be saved or loaded there
        self.dataset_label = (config.dataset or "scf.sample (embedded synthetic sample)") if dataset is None \
            else (config.dataset or "in-memory dataset")
        self._lock, self._held = contextlib.ExitStack(), False
        self._hold_output()  # before the dataset is loaded (minutes for a large one) and anything is written
        try:
            self.dataset = dataset if dataset is not None else self._load_dataset()
            self.items = self._index()
            self._check_work()
            self.record = self._check_and_write_config()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _check_utf8_path(path: Path) -> None:
        """Refuse a model folder that the tokenizers/safetensors libraries cannot open under this locale
        (`scf.schema.utf8_path_problem`); the parquet files and records of the run need no such check."""
        from scf.schema import utf8_path_problem

        problem = utf8_path_problem(path)
        if problem:
            raise PipelineError(problem)

    def _hold_output(self) -> None:
        """Hold ``--out`` for this run (`scf.locking.output_lock`): rank 0 takes ``OUT/.lock``; when it is refused
        (another run holds the folder, or it cannot be written), every rank stops with rank 0's one line."""
        from scf.locking import FolderInUse, output_lock

        refused = ""
        if self.dist.is_main:
            try:
                self._lock.enter_context(output_lock(self.out, "scf caption"))
            except FolderInUse as e:
                refused = str(e)
        refused = self.dist.from_main(refused)
        if refused:
            raise PipelineError(refused)
        self._held = True
        if self.dist.world_size > 1:
            try:
                self._check_shared_out()
            except BaseException:
                self.close()
                raise

    def _check_shared_out(self) -> None:
        """Check that every rank sees the same ``--out`` (a collective, several processes only).

        Rank 0 writes a probe file with a fresh random name there and every other rank looks for it (up to
        `scf.locking.SHARED_PROBE_WAIT_S`): a rank that does not find it has a node-local folder under the same
        path, and would caption its share into a folder rank 0 never reads (the corpus stage then stops, hours
        later, with captions "missing"). Every rank raises the same one line naming those ranks.
        """
        import socket
        import uuid

        import torch.distributed as dist

        from scf.locking import SHARED_PROBE_WAIT_S, not_shared_problem, wait_for_file

        probe, problem = f".scf-caption-shared-{uuid.uuid4().hex}", ""
        if self.dist.is_main:
            try:
                (self.out / probe).write_text(socket.gethostname(), encoding="utf-8")
            except OSError as e:
                problem = f"{self.out}: cannot write to this folder ({e.strerror or e})"
        probe, problem = json.loads(self.dist.from_main(json.dumps([probe, problem])))
        if problem:
            raise PipelineError(problem)
        seen = self.dist.is_main or wait_for_file(self.out / probe, SHARED_PROBE_WAIT_S)
        views: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(views, (self.dist.rank, socket.gethostname(), seen))
        if self.dist.is_main:
            (self.out / probe).unlink(missing_ok=True)
        problem = not_shared_problem(self.out, views, SHARED_PROBE_WAIT_S, "captioning on several nodes needs --out")
        if problem:
            raise PipelineError(problem)

    def close(self) -> None:
        """Release the output folder (`run` does so when it ends); the pipeline cannot run afterwards."""
        self._lock.close()
        self._held = False

    def __enter__(self) -> CaptionPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- set-up -----------------------------------------------------------------------------------
    def _load_dataset(self) -> datasets.DatasetDict:
        if self.config.dataset is None:
            from scf.sample import build_sample

            logger.info("no --dataset: using the embedded synthetic sample (scf.sample)")
            ds = build_sample()
        else:
            from scf.schema import load_table

            ds = load_table(self.config.dataset, "benchmark")
        if self.config.dataset_splits:
            unknown = [s for s in self.config.dataset_splits if s not in ds]
            if unknown:
                raise PipelineError(f"dataset {self.config.dataset or 'sample'} has no split {unknown[0]!r} "
                                    f"(it has: {', '.join(ds)})")
            import datasets

            ds = datasets.DatasetDict({s: ds[s] for s in self.config.dataset_splits})
        return ds

    def _index(self) -> list[_Item]:
        from scf.schema import BENCHMARK_COLUMNS, SchemaError

        items: list[_Item] = []
        seen: dict[str, tuple[str, int]] = {}
        for split, ds in self.dataset.items():
            missing = [c for c in BENCHMARK_COLUMNS if c not in ds.column_names]
            if missing:
                raise SchemaError(f"missing; the benchmark schema needs: {', '.join(BENCHMARK_COLUMNS)}",
                                  column=missing[0], file=f"{self.config.dataset or 'dataset'} [{split}]")
            cols = ds.select_columns(["label", "attack_type", "source", "path", "frame_index"]).to_dict()
            for i, (label, attack, source, path, frame) in enumerate(zip(
                    cols["label"], cols["attack_type"], cols["source"], cols["path"], cols["frame_index"], strict=True)):
                key = row_key(split, source, path, frame)
                if key in seen:
                    raise PipelineError(f"split {split!r} rows {seen[key][1]} and {i} share source, path and frame "
                                        f"({source}, {path}, {frame}); each row needs its own (path, frame_index)")
                seen[key] = (split, i)
                items.append(_Item(split, i, key, int(label), attack, path, source))
        return items

    def _fakes(self) -> list[_Item]:
        return [it for it in self.items if it.label != LABEL_REAL]

    def _reals(self) -> list[_Item]:
        return [it for it in self.items if it.label == LABEL_REAL]

    def _check_work(self) -> None:
        if self.config.split in ("fake", "all") and not self._fakes() and "general" in self.stages:
            raise PipelineError("the dataset has no fake rows (label 0): nothing for SCF's spoof-aware captions")
        if self.config.split == "real" and not self._reals():
            raise PipelineError("the dataset has no real rows (label 1) to caption")
        if "filter" in self.stages and self.config.finetune_exclude_sources:
            sources = sorted({it.source for it in self.items})
            unknown = [s for s in self.config.finetune_exclude_sources if s not in sources]
            if unknown:
                raise PipelineError(f"--finetune-exclude-sources: no rows of source {', '.join(map(repr, unknown))} "
                                    f"in the dataset (sources there: {', '.join(sources)})")
        if "filter" in self.stages:
            present = sorted({it.attack_type for it in self._fakes()}, key=SPOOF_TYPES.index)
            uncovered = [t for t in present if t not in self.keywords.attack_types]
            if uncovered:
                raise PipelineError(
                    f"attack type(s) {', '.join(uncovered)} of the dataset have no keywords in the dictionary "
                    f"({', '.join(self.keywords.sources)}); add them to a --keywords file"
                )

    def _check_and_write_config(self) -> dict[str, Any]:
        record = {
            "dataset": self.dataset_label,
            "dataset_splits": list(self.dataset),
            "captioner_general": self.config.captioner,
            "captioner_spoof": str(self.out / CAPTIONER_DIR),
            "decoding": asdict(self.config.decoding),
            "finetune": asdict(self.config.finetune),
            "finetune_splits": list(self.config.finetune_splits),
            "finetune_exclude_sources": sorted(self.config.finetune_exclude_sources),
            "keywords": self.keywords.to_dict(),
            "keywords_sources": list(self.keywords.sources),
            "keywords_fingerprint": self.keywords.fingerprint(),
            "batch_size": self.config.batch_size,
            "dtype": self.config.dtype,
            "load_in_8bit": self.config.load_in_8bit,
            "world_size": self.dist.world_size,
            "versions": software_versions(),
        }
        path = self.out / CONFIG_FILE
        if path.exists():
            old = read_json(path, "delete it and rerun the same command: the settings are recorded again "
                                  "(captions already written are kept)")
            # a record from an older scf lacks the recipe fields added since: they meant today's defaults
            defaults = {"decoding": asdict(DecodingConfig()), "finetune": asdict(FinetuneConfig())}
            for key, base in defaults.items():
                if isinstance(old.get(key), dict):
                    old[key] = {**base, **old[key]}
            diffs = _setting_diffs(old, record)
            if diffs:
                raise PipelineError(f"{self.out} was produced with other settings: {'; '.join(diffs)}; use a new "
                                    "--out to keep both")
        self.dist.barrier()  # every rank has compared before rank 0 rewrites the file
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            _write_json(path, record)
        return record

    # --- running ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run the configured stages; return a summary (per stage: what it did)."""
        summary: dict[str, Any] = {}
        if not self._held:  # released by close() or an earlier run(): held again (on every rank, a collective)
            self._hold_output()
        try:
            for stage in self.stages:
                summary[stage] = getattr(self, f"_stage_{stage}")()
                self.dist.barrier()
        finally:
            self.close()
        return summary

    def _caption_stage(self, name: str, items: list[_Item], factory: Callable[[], Captioner]) -> dict[str, Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from scf.shards import ShardWriter

        stage_dir = self.out / name
        done = read_captions(stage_dir)
        mine = [it for i, it in enumerate(items) if i % self.dist.world_size == self.dist.rank and it.key not in done]
        already = sum(it.key in done for it in items)
        if not mine:
            self.console.print(f"[bold]{name}[/]: all {len(items)} images already captioned")
            return {"captioned": 0, "already": already}
        captioner = factory()
        start = time.perf_counter()
        n = 0
        progress = Progress(TextColumn(f"{name} captions"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]} img/s"), TimeRemainingColumn(),
                            console=self.console, disable=not (self.config.show_progress and self.dist.is_main))
        with ShardWriter(stage_dir / f"rank-{self.dist.rank:05d}", caption_features(),
                         shard_size=self.config.shard_size, key_column="key") as writer, progress:
            task = progress.add_task(name, total=len(mine), rate="-")
            by_split: dict[str, list[_Item]] = {}
            for it in mine:
                by_split.setdefault(it.split, []).append(it)
            jobs = []  # (split, its image column, batch), in order
            for split, its in by_split.items():
                images_ds = self.dataset[split].select_columns(["image"])
                jobs += [(split, images_ds, its[b : b + self.config.batch_size])
                         for b in range(0, len(its), self.config.batch_size)]
            threads = min(8, os.cpu_count() or 1) if pick_device(self.config.device).type == "cuda" else 0
            # On a GPU the prefetch threads also run the captioner's preprocessing (resize, normalise, pin):
            # done on this thread it would alternate with the GPU instead of overlapping it.
            prepare = getattr(captioner, "prepare", None) if threads > 0 else None
            decoded = _decoded_batches([(ds, batch) for _, ds, batch in jobs], threads, prepare)
            for (split, _, batch), (images, failure, prepared) in zip(jobs, decoded, strict=True):
                if failure is not None:  # caption and keep the rows before the corrupt one, then stop
                    batch = batch[: len(images)]
                if not images:
                    captions = []
                elif prepared is not None:
                    captions = captioner.caption_prepared(prepared)
                else:
                    captions = captioner.caption(images)
                if len(captions) != len(batch):
                    raise RuntimeError(f"captioner returned {len(captions)} captions for {len(batch)} images")
                writer.add_many(({"key": it.key, "caption": c} for it, c in zip(batch, captions, strict=True)),
                                split)
                n += len(batch)
                progress.update(task, advance=len(batch), rate=f"{n / (time.perf_counter() - start):.2f}")
                if failure is not None:
                    bad, error = failure
                    raise PipelineError(
                        f"{self.dataset_label} [{split}] row {bad.index} (path {bad.path}): corrupt image "
                        f"({_image_error(error)}); fix or remove that row, then rerun: the "
                        f"{already + n} {name} captions written so far are kept")
        seconds = time.perf_counter() - start
        rate = n / seconds if seconds > 0 else float("nan")
        self.console.print(f"[bold]{name}[/]: rank {self.dist.rank} captioned {n} images in {seconds:.1f} s "
                           f"([bold]{rate:.2f} images/s[/])" + (f", {already} done before" if already else ""))
        return {"captioned": n, "already": already, "seconds": seconds, "images_per_second": rate}

    def _load_captioner(self, source: str, name: str) -> Blip2Captioner:
        return Blip2Captioner.load(source, decoding=self.config.decoding, batch_size=self.config.batch_size,
                                   dtype=self.config.dtype, device=self.config.device,
                                   load_in_8bit=self.config.load_in_8bit, name=name)

    def _load_spoof_captioner(self, target: Path) -> Blip2Captioner:
        """Load C_S from ``captioner/``; damaged weights (a kill or full disk while saving) name the folder."""
        from safetensors import SafetensorError

        try:
            return self._load_captioner(str(target), self._spoof_name())
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise PipelineError(f"{target}: unreadable spoof-aware captioner C_S ({type(e).__name__}: {e}); delete "
                                f"{target} and rerun: C_S is saved again from the fine-tuning checkpoints in "
                                "finetune/") from e

    def _stage_general(self) -> dict[str, Any]:
        split = self.config.split
        items = self.items if split == "all" else (self._fakes() if split == "fake" else self._reals())
        if self._general_captioner is not None:
            injected = self._general_captioner
            return self._caption_stage("general", items, lambda: injected)
        return self._caption_stage("general", items, lambda: self._load_captioner(self.config.captioner,
                                                                                   self.config.captioner))

    def _stage_filter(self) -> dict[str, Any]:
        if not self.dist.is_main:
            return {}
        general = read_captions(self.out / "general")
        fakes = self._fakes()
        missing = [it for it in fakes if it.key not in general]
        if missing:
            raise PipelineError(f"general captions are missing for {len(missing)} of {len(fakes)} fakes "
                                f"(e.g. {missing[0].key}); run the general stage first (--stage general --split fake)")
        splits = [s for s in self.config.finetune_splits if s in self.dataset] or list(self.dataset)
        excluded = set(self.config.finetune_exclude_sources)
        pool = [it for it in fakes if it.split in splits and it.source not in excluded]
        if not pool:
            raise PipelineError(f"no fake of split(s) {', '.join(splits)} is left for D_S once the sources "
                                f"{', '.join(sorted(excluded))} are excluded (--finetune-exclude-sources)")
        stats = {t: {"kept": 0, "total": 0} for t in SPOOF_TYPES if any(it.attack_type == t for it in pool)}
        kept, unmatched_captions = [], {}
        for it in pool:
            caption = general[it.key]
            word = self.keywords.match(caption, it.attack_type)
            stats[it.attack_type]["total"] += 1
            if word:
                stats[it.attack_type]["kept"] += 1
                kept.append({"key": it.key, "split": it.split, "index": it.index, "attack_type": it.attack_type,
                             "caption": caption, "keyword": word})
            else:
                unmatched_captions.setdefault(it.attack_type, []).append(caption)
        self._print_filter_table(stats, splits)
        empty = [t for t, s in stats.items() if s["kept"] == 0]
        hints = "; ".join(f"{t}: {', '.join(suggest_keywords(unmatched_captions.get(t, []), 6, keywords=self.keywords, attack_type=t)) or '(none)'}" for t in empty)
        if "other" in empty:
            hints += (". 'other' is the type of fakes whose attack type was not given (an image-folder fake/ or "
                      "spoof/ folder, a manifest without attack_type); they match only the 'other' keywords ("
                      f"{', '.join(self.keywords.keywords.get('other', ())[:4])}, ...). Give them their type "
                      "(print/, replay/, mask/ folders or an attack_type column) and ingest again, or extend "
                      "'other' with the medium words in a --keywords file (mode: extend, keywords: {other: "
                      "[photo, screen]})")
        if not kept and self.config.if_empty == "general":
            logger.warning("the spoof-aware set D_S is empty (%s matched nothing): C_S is not trained and fakes "
                           "keep their general captions (--if-empty general). Keyword candidates: %s",
                           ", ".join(empty), hints)
        elif not kept:
            raise PipelineError(f"the spoof-aware set D_S is empty: no fake's general caption contains a keyword of "
                                f"its own attack type ({', '.join(empty)} matched nothing). Frequent words in their "
                                f"captions, candidates for a --keywords file: {hints}. To go on without C_S (the "
                                f"fakes keep their general captions; meant for the tiny preset), rerun with "
                                f"--if-empty general")
        if empty and kept:
            logger.warning("attack type(s) %s matched no keyword; C_S learns nothing specific to them. Frequent "
                           "words of their captions: %s", ", ".join(empty), hints)
        folder = self.out / "filter"
        folder.mkdir(parents=True, exist_ok=True)
        from scf.shards import write_text_atomic

        write_text_atomic(folder / DS_FILE, "".join(json.dumps(row) + "\n" for row in kept))  # a full disk: no partial copy
        _write_json(folder / STATS_FILE, {"splits": splits, "per_attack_type": stats, "d_s_size": len(kept),
                                          "keywords_fingerprint": self.keywords.fingerprint()})
        return {"d_s": len(kept), "stats": stats}

    def _print_filter_table(self, stats: dict[str, dict[str, int]], splits: list[str]) -> None:
        from rich.table import Table

        excluded = self.config.finetune_exclude_sources
        table = Table(title=f"SCF keyword filter (fakes of {', '.join(splits)}"
                            + (f"; sources excluded: {', '.join(excluded)})" if excluded else ")"))
        for col in ("attack type", "kept", "total", "kept %"):
            table.add_column(col, justify="left" if col == "attack type" else "right")
        for attack, s in stats.items():
            table.add_row(attack, str(s["kept"]), str(s["total"]), f"{100 * s['kept'] / max(1, s['total']):.1f}")
        total_kept, total = sum(s["kept"] for s in stats.values()), sum(s["total"] for s in stats.values())
        table.add_row("[bold]all", str(total_kept), str(total), f"{100 * total_kept / max(1, total):.1f}")
        self.console.print(table)

    def _stage_finetune(self) -> dict[str, Any]:
        target = self.out / CAPTIONER_DIR
        if not self.dist.is_main:
            return {}
        ds_file = self.out / "filter" / DS_FILE
        rows = _read_d_s(ds_file) if ds_file.exists() else None
        fingerprint = d_s_fingerprint(rows) if rows is not None else None
        if (target / FINETUNE_RECORD).exists():
            saved = read_json(target / FINETUNE_RECORD, f"delete {target} and rerun: C_S is saved again from "
                                                        "the fine-tuning checkpoints in finetune/")
            if rows is not None and saved.get("d_s_fingerprint") not in (None, fingerprint):
                raise PipelineError(_d_s_changed(target, saved.get("samples"), len(rows)))
            if rows is not None and "d_s_fingerprint" not in saved:
                logger.warning("%s records no D_S fingerprint (an older run): cannot check that it was trained on "
                               "the current filter/%s", target / FINETUNE_RECORD, DS_FILE)
            self.console.print(f"[bold]finetune[/]: C_S already saved in {target}")
            return {"skipped": True}
        if rows is None:
            raise PipelineError(f"{ds_file} not found; run the filter stage first (--stage filter)")
        if not rows:
            self.console.print("[bold]finetune[/]: D_S is empty, no spoof-aware captioner C_S is trained "
                               "(fakes keep their general captions)")
            return {"skipped": "empty D_S"}
        self._check_utf8_path(target)  # before the fine-tuning, not when C_S is saved after it
        work = self.out / "finetune"
        work.mkdir(parents=True, exist_ok=True)
        marker = work / D_S_FINGERPRINT_FILE  # checkpoints in finetune/ resume only on the D_S they were trained on
        if marker.exists():
            old = read_json(marker, f"delete the folder {work} and rerun: C_S is fine-tuned from the start")
            if old.get("d_s_fingerprint") != fingerprint:
                raise PipelineError(_d_s_changed(work, old.get("samples"), len(rows)))
        else:
            _write_json(marker, {"d_s_fingerprint": fingerprint, "samples": len(rows)})
        from scf.captioning.finetune import finetune_captioner, push_captioner_to_hub, save_captioner

        model, processor = load_blip2(self.config.captioner, dtype="fp32", device=self.config.device)
        images_by_split = {s: self.dataset[s].select_columns(["image"]) for s in {r["split"] for r in rows}}

        def load_images(idx: Sequence[int]) -> list:
            return [images_by_split[rows[i]["split"]][rows[i]["index"]]["image"] for i in idx]

        record = finetune_captioner(model, processor, load_images, [r["caption"] for r in rows], self.config.finetune,
                                    work, prompt=self.config.decoding.prompt,
                                    show_progress=self.config.show_progress)
        record["captioner_general"] = self.config.captioner
        record["d_s_fingerprint"] = fingerprint
        record["finetune_splits"] = list(self.config.finetune_splits)
        record["finetune_exclude_sources"] = sorted(self.config.finetune_exclude_sources)
        save_captioner(record["model"], processor, target, record)
        self.console.print(f"[bold]finetune[/]: {record['samples']} samples, {record['steps']} steps, loss "
                           f"{record['first_loss']:.4f} -> {record['last_loss']:.4f}; C_S saved to {target}")
        if self.config.push_captioner_to_hub:
            repo = self.config.push_captioner_to_hub
            try:
                url = push_captioner_to_hub(target, repo, local_paths=self._local_paths())
            except Exception as e:  # noqa: BLE001 - network / auth errors become one line (no token in them)
                from scf.hub import stage_write_failure

                head = stage_write_failure(e, target) or \
                    f"push of C_S to {repo} failed: {type(e).__name__}: {_one_line(e)}"
                raise PipelineError(f"{head}; C_S is saved "
                                    f"in {target}: upload it with {hf_upload_advice('model', repo, target)}, then "
                                    "rerun the same command to go on") from e
            self.console.print(f"C_S pushed to {url}")
        return {k: v for k, v in record.items() if k != "model"}

    def _local_paths(self) -> list[str | None]:
        """The local paths a pushed record or card may name (hidden in the upload, see `scf.hub`): the dataset,
        the output folder, a local captioner and keyword file."""
        return [self.config.dataset, str(self.out), self.config.captioner, self.config.keywords_file]

    def _spoof_name(self) -> str:
        return self.config.push_captioner_to_hub or str(self.out / CAPTIONER_DIR)

    def _d_s_is_empty(self) -> bool:
        ds_file = self.out / "filter" / DS_FILE
        return ds_file.exists() and not ds_file.read_text(encoding="utf-8").strip()

    def _stage_spoof(self) -> dict[str, Any]:
        target = self.out / CAPTIONER_DIR
        if self._d_s_is_empty() and self.config.if_empty == "general":
            self.console.print("[bold]spoof[/]: no C_S (D_S is empty): the fakes keep their general captions")
            return {"skipped": "empty D_S"}
        if not (target / FINETUNE_RECORD).exists():
            raise PipelineError(f"no spoof-aware captioner in {target}; run the finetune stage first (--stage finetune)")
        self._check_utf8_path(target)
        return self._caption_stage("spoof", self._fakes(), lambda: self._load_spoof_captioner(target))

    def _stage_corpus(self) -> dict[str, Any]:
        if not self.dist.is_main:
            return {}
        import datasets

        from scf.schema import BENCHMARK_COLUMNS, validate_rows, vqa_features
        from scf.shards import ShardWriter

        mode = self.config.interpretation
        general = read_captions(self.out / "general")
        spoof = read_captions(self.out / "spoof") if mode == "spoof" else {}
        spoof_name = self._spoof_name()
        if mode == "spoof" and self._d_s_is_empty() and self.config.if_empty == "general":
            spoof = {it.key: general[it.key] for it in self._fakes() if it.key in general}
            spoof_name = self.config.captioner  # honest provenance: these fakes were captioned by C_G
        missing = [it for it in self.items if it.key not in general]
        if missing:
            raise PipelineError(f"general captions are missing for {len(missing)} of {len(self.items)} rows "
                                f"(e.g. {missing[0].key}); run --split all (or --split real and --split fake) first")
        missing = [it for it in self._fakes() if it.key not in spoof] if mode == "spoof" else []
        if missing:
            raise PipelineError(f"spoof-aware captions are missing for {len(missing)} fakes (e.g. {missing[0].key}); "
                                "run --split fake first, or use --interpretation general")
        final = self.out / CORPUS_DIRS[mode]
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:  # a full disk: the partial copy (tens of GB at real scale) is removed, not left to fill it
            counts: dict[str, int] = {}
            samples: list[dict[str, str]] = []
            chunk = 256
            with ShardWriter(tmp, vqa_features(), shard_size=self.config.shard_size) as writer:
                for split, ds in self.dataset.items():
                    raw = ds.cast_column("image", datasets.Image(decode=False)).select_columns(list(BENCHMARK_COLUMNS))
                    keys = {it.index: it for it in self.items if it.split == split}
                    for start in range(0, len(raw), chunk):
                        block = raw[start : start + chunk]
                        rows = [dict(zip(block, values, strict=True)) for values in zip(*block.values(), strict=True)]
                        out_rows = []
                        for offset, row in enumerate(rows):
                            it = keys[start + offset]
                            out_rows.append(vqa_row(
                                row, caption_general=general[it.key], caption_spoof=spoof.get(it.key),
                                captioner_general=self.config.captioner, captioner_spoof=spoof_name,
                                keyword=self.keywords.match(general[it.key], it.attack_type) if it.label != LABEL_REAL else "",
                                interpretation=mode))
                        validate_rows(out_rows, "vqa", file=str(final), start=start)
                        writer.add_many(out_rows, split)
                        for r in out_rows:
                            s = self._sample(r)
                            if sum(x["label"] == s["label"] for x in samples) < (4 if s["label"] == "fake" else 2):
                                samples.append(s)
                    counts[split] = len(raw)
            stats_file = self.out / "filter" / STATS_FILE
            stats = read_json(stats_file, "rerun without --stage (or with --stage filter) to rewrite it")[
                "per_attack_type"] if stats_file.exists() else None
            card_config = {k: v for k, v in self.record.items() if k != "versions"} | {"interpretation": mode}
            (tmp / "README.md").write_text(dataset_card(
                title="I-FAS VQA corpus (SCF captions)", splits=counts, config=card_config, filter_stats=stats,
                samples=samples, interpretation=mode), encoding="utf-8")
            _write_json(tmp / CONFIG_FILE, self.record | {"interpretation": mode})
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        self.console.print(f"[bold]corpus[/]: {sum(counts.values())} rows ({', '.join(f'{s} {n}' for s, n in counts.items())}) "
                           f"written to {final}")
        if self.config.push_to_hub:
            from huggingface_hub import HfApi

            from scf.hub import upload_redacted

            repo = self.config.push_to_hub
            try:
                upload_redacted(HfApi(), final, repo_id=repo, repo_type="dataset", private=True,
                                commit_message="SCF VQA corpus", paths=self._local_paths())
            except Exception as e:  # noqa: BLE001 - network / auth errors become one line (no token in them)
                from scf.hub import stage_write_failure

                head = stage_write_failure(e, final) or f"push to {repo} failed: {type(e).__name__}: {_one_line(e)}"
                raise PipelineError(f"{head}; the corpus is in "
                                    f"{final}: rerun the same command to retry (no caption is redone), or "
                                    f"{hf_upload_advice('dataset', repo, final)}") from e
            self.console.print(f"corpus pushed to the Hub dataset {self.config.push_to_hub}")
        return {"rows": counts, "folder": str(final)}

    @staticmethod
    def _sample(row: dict[str, Any]) -> dict[str, str]:
        return {"label": LABEL_NAMES[int(row["label"])], "attack_type": row["attack_type"], "keyword": row["keyword"],
                "caption_general": row["caption_general"], "caption": row["caption"]}
