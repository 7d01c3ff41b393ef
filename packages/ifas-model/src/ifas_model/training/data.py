"""Training data of I-FAS: the VQA corpus as a torch Dataset, the collator, and a resumable batch order.

Images are decoded here, in ``__getitem__`` (so in the DataLoader workers), inside a try/except: an image
that cannot be decoded is skipped and counted, never a crash hours into a run. The batch order is a pure
function of (seed, epoch), sharded over ranks, and can start from any micro-batch, which is what makes
resuming after a kill exact.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scf.schema import LABEL_FAKE, interpretation_for

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)

_COLUMNS = ("image", "label", "judgment", "interpretation", "caption_general", "video_id")


def load_corpus(source: str) -> datasets.DatasetDict:
    """Load and validate the VQA corpus (``scf.schema.load_table(source, kind="vqa")``), images undecoded.

    Raises:
        FileNotFoundError: the local path does not exist.
        scf.schema.SchemaError: the corpus breaks the contract (file, column and row named).
        ValueError: it cannot be loaded at all (for example a Hub id while the Hub is unreachable).
    """
    import datasets

    from ifas_model._loading import one_line
    from scf.schema import SchemaError, load_table

    try:
        corpus = load_table(source, kind="vqa")
    except SchemaError as err:
        if err.column in ("question", "answer", "judgment", "interpretation", "caption"):
            raise SchemaError(f"{err}. {source} looks like a benchmark dataset (images and labels, no VQA "
                              f"answers): run `scf caption --dataset {source} --out OUT` first and train on "
                              "OUT/corpus") from err
        raise
    except FileNotFoundError:
        raise
    except Exception as err:  # Hub unreachable, not a dataset, unreadable files: one line naming the source
        raise ValueError(f"cannot load the VQA corpus {source}: {one_line(err)}") from err
    return datasets.DatasetDict(
        {split: ds.cast_column("image", datasets.Image(decode=False)) for split, ds in corpus.items()}
    )


def holdout_mask(video_ids: Sequence[str], fraction: float) -> list[bool]:
    """True for rows whose video falls in the deterministic hold-out.

    A video is held out when the first 8 hex digits of SHA-1(video_id), as a fraction of 2^32, are below
    ``fraction``: all frames of one video land on the same side, the choice depends on nothing but the id,
    and it is the same on every machine and every run.
    """
    out = []
    for vid in video_ids:
        h = int(hashlib.sha1(vid.encode("utf-8")).hexdigest()[:8], 16)
        out.append(h / 2**32 < fraction)
    return out


def _names(spec: str | None) -> list[str]:
    return [x.strip() for x in (spec or "").split(",") if x.strip()]


def parse_sources(sources: str | None) -> dict[str, tuple[str, ...] | None]:
    """``--sources`` as {source: its splits, or None for every split}.

    Entries are comma-separated; ``NAME:SPLIT+SPLIT`` keeps only those splits of that source (``CelebA-Spoof:train,
    OULU-NPU`` keeps CelebA-Spoof's train rows and every row of OULU-NPU), for protocol settings whose sources
    train on different splits.

    Raises:
        ValueError: an entry with an empty name or split list.
    """
    out: dict[str, tuple[str, ...] | None] = {}
    for entry in _names(sources):
        name, sep, splits = entry.partition(":")
        name = name.strip()
        parts = tuple(s.strip() for s in splits.split("+") if s.strip())
        if not name or (sep and not parts):
            raise ValueError(f"--sources entry {entry!r}: expected NAME or NAME:SPLIT[+SPLIT...]")
        if name in out:
            raise ValueError(f"--sources names {name!r} twice; give it once (NAME:SPLIT+SPLIT for several splits)")
        out[name] = parts if sep else None
    return out


def select_sources(corpus: datasets.DatasetDict, sources: str | None) -> datasets.DatasetDict:
    """Keep only the rows of the ``sources`` (see `parse_sources`; None: keep all), and of a source given as
    ``NAME:SPLITS`` only the rows of those splits.

    Raises:
        ValueError: a source name that no split of the corpus has (the ones it has are listed), or a split of
            ``NAME:SPLITS`` that the corpus does not have.
    """
    import datasets

    wanted = parse_sources(sources)
    if not wanted:
        return corpus
    have = sorted({s for split in corpus.values() for s in split.unique("source")})
    unknown = [w for w in wanted if w not in have]
    if unknown:
        raise ValueError(f"source(s) {', '.join(map(repr, unknown))} not in the corpus (sources: {', '.join(have)})")
    for name, splits in wanted.items():
        missing = [s for s in splits or () if s not in corpus]
        if missing:
            raise ValueError(f"--sources {name}:{'+'.join(splits)}: split(s) {', '.join(missing)} not in the corpus "
                             f"(splits: {', '.join(corpus)})")
    out = {}
    for split, table in corpus.items():
        keep = {n for n, splits in wanted.items() if splits is None or split in splits}
        out[split] = table.filter(lambda s, keep=keep: s in keep, input_columns="source")
    return datasets.DatasetDict(out)


def split_train_eval(corpus: datasets.DatasetDict, train_split: str, eval_split: str | None,
                     holdout_fraction: float, sources: str | None = None,
                     ) -> tuple[datasets.Dataset, datasets.Dataset | None, str]:
    """Choose the training and evaluation tables (of a corpus already filtered with `select_sources`).

    ``train_split`` may name several splits, comma-separated (``train,test``: FLIP's MCIO training lists are
    the union of the train and test splits of the source datasets); they are concatenated. ``eval_split``
    None picks ``dev``, else ``test`` (when not trained on), else the hold-out, skipping splits that hold no
    row (after the source filter a corpus's ``dev`` may hold none of the chosen sources); ``"none"`` disables
    evaluation; ``"holdout"`` takes `holdout_mask` videos out of the training table.

    Args:
        sources: the ``--sources`` filter already applied, only to name it in messages.

    Returns:
        (train, eval or None, the name of the evaluation source).

    Raises:
        ValueError: a split that the corpus does not have (named with the ones it has), or an empty training
            or explicitly named evaluation split (named with the sources).
    """
    import datasets

    have = ", ".join(corpus)
    of_sources = f" for source(s) {sources}" if _names(sources) else ""
    train_splits = _names(train_split)
    if not train_splits:
        raise ValueError("no training split given")
    for split in train_splits:
        if split not in corpus:
            raise ValueError(f"training split '{split}' not in the corpus (splits: {have})")
    train = (corpus[train_splits[0]] if len(train_splits) == 1
             else datasets.concatenate_datasets([corpus[s] for s in train_splits]))
    if len(train) == 0:
        raise ValueError(f"the training table ({train_split}) is empty{of_sources}")
    if eval_split is None:
        candidates = [s for s in ("dev", "test") if s in corpus and s not in train_splits]
        empty = []
        for name in candidates:  # the first candidate with rows; the empty ones before it are reported
            if len(corpus[name]):
                break
            empty.append(name)
        eval_split = candidates[len(empty)] if len(empty) < len(candidates) else "holdout"
        if empty:
            logger.info("split(s) %s hold no rows%s; evaluating on %s", ", ".join(empty), of_sources, eval_split)
    if eval_split == "none":
        return train, None, "none"
    if eval_split == "holdout":
        mask = holdout_mask(train["video_id"], holdout_fraction)
        held = [i for i, m in enumerate(mask) if m]
        kept = [i for i, m in enumerate(mask) if not m]
        if not held or not kept:
            raise ValueError(f"the hold-out of {holdout_fraction:.0%} of training videos is empty or everything; "
                             "name an --eval-split or change holdout_fraction")
        return train.select(kept), train.select(held), f"holdout({holdout_fraction:g} of {train_split})"
    if eval_split not in corpus:
        raise ValueError(f"evaluation split '{eval_split}' not in the corpus (splits: {have})")
    if eval_split in train_splits:
        raise ValueError(f"evaluation split '{eval_split}' is a training split")
    if len(corpus[eval_split]) == 0:
        raise ValueError(f"evaluation split '{eval_split}' holds no rows{of_sources}; choose another --eval-split "
                         "(or holdout, or none)")
    return train, corpus[eval_split], eval_split


def stratified_subsample(table: datasets.Dataset, n: int, seed: int) -> datasets.Dataset:
    """At most ``n`` rows of ``table``, drawn with ``seed`` and stratified by (``source``, ``label``).

    Each (source, label) stratum gets a share of ``n`` proportional to its size (largest remainders break
    ties) and at least one row when ``n`` allows; rows inside a stratum are a seeded random choice. The rows
    keep their table order. A table of at most ``n`` rows is returned unchanged. Used for the periodic
    evaluation (``max_eval_samples``), where the first N rows of a multi-source split would cover one source.
    """
    import random

    if len(table) <= n:
        return table
    keys = list(zip(table["source"], table["label"], strict=True))
    strata: dict[tuple[str, int], list[int]] = {}
    for i, key in enumerate(keys):
        strata.setdefault(key, []).append(i)
    order = sorted(strata)
    quota = {k: n * len(strata[k]) / len(table) for k in order}
    take = {k: int(quota[k]) for k in order}
    if n >= len(order):
        for k in order:
            take[k] = max(take[k], 1)
    left = n - sum(take.values())
    for k in sorted(order, key=lambda k: (-(quota[k] - int(quota[k])), k)):
        if left <= 0:
            break
        if take[k] < len(strata[k]):
            take[k] += 1
            left -= 1
    while sum(take.values()) > n:  # the minimum of one per stratum overshot: trim the largest strata
        k = max(order, key=lambda k: (take[k], k))
        take[k] -= 1
    rng = random.Random(seed)
    chosen = sorted(i for k in order for i in rng.sample(strata[k], take[k]))
    return table.select(chosen)


def corpus_fingerprint(corpus: datasets.DatasetDict) -> dict[str, Any]:
    """A cheap identity of a VQA corpus that does not depend on where it is stored.

    Rows per split, and per split a SHA-1 of the ``source``, ``video_id``, ``label`` and ``interpretation``
    columns in row order (image bytes are not read: hashing them would cost a pass over the whole corpus).
    A copied or moved corpus, or the same corpus re-saved in other shards, has the same fingerprint; a
    different corpus, a different split of it, or one captioned again has another.

    Returns:
        ``{"rows": {split: n}, "sha1": {split: hex}}`` (JSON friendly).
    """
    columns = ("source", "video_id", "label", "interpretation")
    rows, digests = {}, {}
    for split in sorted(corpus):
        ds = corpus[split]
        table = ds.select_columns(list(columns)).with_format("arrow")[:] if len(ds) else None
        h = hashlib.sha1()
        for name in columns:
            h.update(name.encode())
            for value in (table.column(name).to_pylist() if table is not None else []):
                h.update(str(value).encode("utf-8") + b"\x1f")
        rows[split], digests[split] = len(ds), h.hexdigest()
    return {"rows": rows, "sha1": digests}


def decode_image(value: Any) -> Image.Image:
    """Decode an undecoded ``datasets.Image`` value (``{"bytes", "path"}``) or a PIL image to RGB.

    Raises:
        OSError, ValueError: the image cannot be read (PIL's `UnidentifiedImageError` is an OSError).
    """
    from PIL import Image

    if isinstance(value, Image.Image):
        img = value
    elif isinstance(value, dict) and value.get("bytes"):
        img = Image.open(io.BytesIO(value["bytes"]))
    elif isinstance(value, dict) and value.get("path"):
        img = Image.open(value["path"])
    else:
        raise ValueError("no image bytes and no path")
    img.load()
    from scf.imaging import to_rgb  # the conversion of the processor, judge() and scf ingest (16-bit, alpha)

    return Image.fromarray(to_rgb(img))


class VQADataset:
    """Rows of the VQA corpus as training examples, images decoded on access (a map-style torch Dataset).

    Args:
        table: a VQA table whose ``image`` column is undecoded (see `load_corpus`).
        answers: ``full`` (the corpus's judgment + interpretation), ``judgment-only`` (no interpretation:
            the paper's "without SCF" ablation) or ``general-captions`` (fakes explained with the general
            caption T_F instead of the spoof-aware T_S: the Table 4 ablation).
    """

    def __init__(self, table: datasets.Dataset, answers: str = "full") -> None:
        self.table = table.select_columns(list(_COLUMNS))
        self.answers = answers

    def __len__(self) -> int:
        return len(self.table)

    def interpretation(self, row: dict[str, Any]) -> str:
        """The interpretation this run trains on for one row (see ``answers``)."""
        if self.answers == "judgment-only":
            return ""
        if self.answers == "general-captions" and row["label"] == LABEL_FAKE:
            return interpretation_for(row["caption_general"])
        return row["interpretation"]

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.table[int(index)]
        try:
            image = decode_image(row["image"])
        except (OSError, ValueError, SyntaxError) as err:  # PIL raises SyntaxError on some broken PNGs
            logger.debug("row %d: image not decodable (%s)", index, err)
            image = None
        return {"index": int(index), "image": image, "label": int(row["label"]), "judgment": row["judgment"],
                "interpretation": self.interpretation(row), "video_id": row["video_id"]}


@dataclass
class Batch:
    """One collated micro-batch: model inputs, the rows' labels and video ids, and how many were skipped."""

    inputs: dict[str, torch.Tensor]
    """``pixel_values``, ``input_ids``, ``attention_mask`` and, for training, ``labels``, ``answer_segments``."""
    prompt_inputs: dict[str, torch.Tensor] | None
    """Prompt-only ``input_ids`` and ``attention_mask`` for ``model.score`` (evaluation batches only); the
    pixels are ``inputs["pixel_values"]`` (the same images: processed and copied to the device once)."""
    labels: list[int]
    video_ids: list[str]
    indices: list[int]
    skipped: int
    """Rows of this micro-batch whose image could not be decoded."""

    def __len__(self) -> int:
        return len(self.labels)

    def pin_memory(self) -> Batch:
        """This batch with its tensors in page-locked memory (the DataLoader's ``pin_memory=True`` calls it), so
        that ``.to("cuda", non_blocking=True)`` is an asynchronous copy."""
        prompt = None if self.prompt_inputs is None else {k: v.pin_memory() for k, v in self.prompt_inputs.items()}
        return Batch({k: v.pin_memory() for k, v in self.inputs.items()}, prompt, self.labels, self.video_ids,
                     self.indices, self.skipped)


class VQACollator:
    """Turn examples into a `Batch` with the I-FAS processor, dropping (and counting) undecodable images.

    Args:
        processor: the ``IFASProcessor``.
        with_prompts: also build prompt-only inputs for scoring (evaluation).
    """

    def __init__(self, processor: Any, with_prompts: bool = False) -> None:
        self.processor = processor
        self.with_prompts = with_prompts

    def __call__(self, examples: list[dict[str, Any]]) -> Batch:
        good = [e for e in examples if e["image"] is not None]
        skipped = len(examples) - len(good)
        if not good:
            return Batch({}, None, [], [], [], skipped)
        images = [e["image"] for e in good]
        enc = self.processor(images=images, judgments=[e["judgment"] for e in good],
                             interpretations=[e["interpretation"] for e in good], return_tensors="pt")
        # the prompt-only inputs for scoring: the fixed prompt's ids, no second pass of the image processor (the
        # pixels are enc["pixel_values"]: same images, same processor)
        prompt = self.processor.prompt_inputs(len(images)) if self.with_prompts else None
        keys = ("pixel_values", "input_ids", "attention_mask", "labels", "answer_segments")
        return Batch({k: enc[k] for k in keys if k in enc}, prompt, [e["label"] for e in good],
                     [e["video_id"] for e in good], [e["index"] for e in good], skipped)


class ResumableBatchSampler:
    """Micro-batches of indices for one rank: a seeded permutation per epoch, startable at any micro-batch.

    Epoch ``e`` shuffles with ``torch.Generator().manual_seed(seed + e)`` (``shuffle=False`` keeps order),
    pads the order by wrapping to a multiple of ``world_size`` (as ``DistributedSampler`` does), cuts it into
    global micro-batches of ``batch_size * world_size`` and gives rank ``r`` every ``world_size``-th row of
    each, so every rank sees the same number of micro-batches. The order depends on nothing else, so a
    resumed run that calls ``set_epoch(e, start=k)`` continues exactly where the killed one stopped.
    """

    def __init__(self, num_rows: int, batch_size: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1) -> None:
        if num_rows < 1:
            raise ValueError("cannot sample from an empty table")
        self.num_rows, self.batch_size, self.seed, self.shuffle = num_rows, batch_size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order and the first micro-batch to yield."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        """Micro-batches per epoch (for every rank)."""
        padded = math.ceil(self.num_rows / self.world_size) * self.world_size
        return math.ceil(padded / (self.batch_size * self.world_size))

    def _order(self) -> list[int]:
        import torch

        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_rows, generator=g).tolist()
        else:
            order = list(range(self.num_rows))
        padded = math.ceil(self.num_rows / self.world_size) * self.world_size
        return order + order[: padded - self.num_rows]

    def __iter__(self) -> Iterator[list[int]]:
        order = self._order()
        global_batch = self.batch_size * self.world_size
        for k in range(self.start, len(self)):
            chunk = order[k * global_batch : (k + 1) * global_batch]
            yield chunk[self.rank :: self.world_size]
