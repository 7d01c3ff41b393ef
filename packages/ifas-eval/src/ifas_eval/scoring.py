"""Checkpoint scoring on a protocol: load the benchmark data, score every test set, write score files.

Scores are the model's one-forward-pass P("Yes") = P(real) (`ifas_model.inference.score_images`), one per
frame, written incrementally to ``<out>/scores/<setting>/<checkpoint>/<test set>.csv`` in the score-file
format (`ifas_eval.scorefile`). A killed run resumes: finished files are reused (when their row count matches
the test set) and a ``.partial`` file continues from its last complete row.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ifas_eval import scorefile
from ifas_eval.metrics import ScoreSet
from ifas_eval.protocols import EMBEDDED_SAMPLE, Protocol, Selection, TestSet

if TYPE_CHECKING:  # pragma: no cover
    import datasets

logger = logging.getLogger(__name__)


@dataclass
class BenchmarkData:
    """One or more benchmark tables (`scf.schema.load_table` results) from which protocol rows are selected.

    Attributes:
        origin: what was loaded (a path, Hub id, or "embedded sample"), for messages.
        tables: ``(name, DatasetDict)`` pairs; a source may live in any of them.
    """

    origin: str
    tables: list[tuple[str, datasets.DatasetDict]]

    def select(self, parts: tuple[Selection, ...], what: str) -> datasets.Dataset:
        """Rows of the given sources and splits, concatenated in (table, split, row) order.

        Raises:
            ValueError: no row matches (the test set is named with what was looked for).
        """
        import datasets

        pieces = []
        for _, table in self.tables:
            for sel in parts:
                for split in sel.splits:
                    if split not in table:
                        continue
                    ds = table[split]
                    sources = np.asarray(ds.select_columns(["source"])["source"], dtype=object)
                    idx = np.flatnonzero(sources == sel.source)
                    if idx.size:
                        pieces.append(ds.select(idx.tolist()))
        if not pieces:
            wanted = " + ".join(p.describe() for p in parts)
            raise ValueError(f"{what}: no rows of {wanted} in {self.origin} (sources there: "
                             f"{', '.join(self.sources()) or 'none'})")
        return pieces[0] if len(pieces) == 1 else datasets.concatenate_datasets(pieces)

    def sources(self) -> list[str]:
        """Distinct ``source`` values over every table and split."""
        found: set[str] = set()
        for _, table in self.tables:
            for ds in table.values():
                found.update(ds.unique("source"))
        return sorted(found)


def _is_table_folder(path: Path) -> bool:
    # a README.md alone does not make a dataset: `scf ingest --config-name` writes one into the parent folder
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
            return BenchmarkData("the embedded synthetic sample", [("sample", build_sample(0))])
        raise ValueError(f"protocol {protocol.name!r} needs --data (a benchmark dataset folder or Hub id "
                         "written by `scf ingest`)")
    path = Path(data).expanduser()
    if path.is_dir():
        if _is_table_folder(path):
            return BenchmarkData(str(path), [(path.name, load_table(str(path)))])
        subs = sorted(p for p in path.iterdir() if p.is_dir() and _is_table_folder(p))
        if not subs:
            raise ValueError(f"{path}: neither a benchmark dataset folder nor a folder of them (one per source)")
        return BenchmarkData(str(path), [(p.name, load_table(str(p))) for p in subs])
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


def safe_name(name: str) -> str:
    """A test-set or setting name usable as a file name."""
    return re.sub(r"[^A-Za-z0-9_.+&-]+", "_", name)


def pick_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_checkpoint(path: str, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    """Load an I-FAS model and processor saved by ``save_pretrained`` (safetensors; no remote code).

    Args:
        path: a checkpoint folder (e.g. ``<run>/final``) or a Hub id.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
        dtype: ``auto`` (bfloat16 on CUDA, float32 on CPU), ``float32``, ``bfloat16`` or ``float16``.

    Returns:
        ``(model, processor)``, the model in eval mode on ``device``.
    """
    import torch

    from ifas_model.modeling import IFASForConditionalGeneration
    from ifas_model.processing import IFASProcessor

    device = pick_device(device)
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    model = IFASForConditionalGeneration.from_pretrained(path, dtype=torch_dtype, use_safetensors=True)
    processor = IFASProcessor.from_pretrained(path)
    model.to(device).eval()
    return model, processor


def _images(ds: datasets.Dataset, start: int, stop: int) -> list[Any]:
    from PIL import Image

    from scf.faces import to_rgb

    return [Image.fromarray(to_rgb(im)) for im in ds.select(range(start, stop))["image"]]


def _meta_rows(ds: datasets.Dataset) -> tuple[list[int], list[str], list[str], list[int], list[str]]:
    cols = ds.select_columns(["label", "video_id", "attack_type", "frame_index", "path", "source"])
    videos = [f"{s}/{v}" if not v.startswith(f"{s}/") else v for s, v in zip(cols["source"], cols["video_id"],
                                                                             strict=True)]
    return (list(cols["label"]), videos, list(cols["attack_type"]), list(cols["frame_index"]),
            list(cols["path"]))


def score_test_set(model: Any, processor: Any, ds: datasets.Dataset, name: str, out_csv: Path, *,
                   batch_size: int, progress: Any = None, normalize: str = "vocab") -> ScoreSet:
    """Score every frame of a test set, appending to ``out_csv`` as batches finish (resumable).

    Args:
        model: the I-FAS model.
        processor: its processor.
        ds: the test set's rows (benchmark schema).
        name: the test set's name.
        out_csv: the final score file; ``<out_csv>.partial`` holds a run in progress.
        batch_size: images per forward pass.
        progress: a `rich.progress.Progress` to report on (optional).
        normalize: how P(real) is read (`ifas_model.inference.score_images`): "vocab" = P(" Yes") over the
            vocabulary (the paper's score), "yes_no" = P(" Yes") / (P(" Yes") + P(" No")).

    Returns:
        The `ScoreSet` read back from the finished score file.
    """
    from ifas_model.inference import score_images

    n = len(ds)
    if out_csv.exists():
        done = scorefile.read_scores(out_csv, name)
        if len(done) == n:
            logger.info("%s: reusing %s (%d frames)", name, out_csv, n)
            if progress is not None:
                progress.add_task(f"{name} (cached)", total=n, completed=n)
            return done
        logger.warning("%s: %s has %d rows, the test set %d: scoring again", name, out_csv, len(done), n)
        out_csv.unlink()
    partial = out_csv.with_name(out_csv.name + ".partial")
    start = scorefile.count_rows(partial) if partial.exists() else 0
    if start > n:
        start = 0
    if start == 0:
        scorefile.write_header(partial)
    else:
        logger.info("%s: resuming after %d of %d frames", name, start, n)
    labels, videos, attacks, frames, paths = _meta_rows(ds)
    task = progress.add_task(name, total=n, completed=start) if progress is not None else None
    for lo in range(start, n, batch_size):
        hi = min(n, lo + batch_size)
        scores = np.asarray(score_images(model, processor, _images(ds, lo, hi), batch_size,
                                         normalize=normalize), dtype=np.float64)
        scorefile.append_rows(partial, zip(videos[lo:hi], labels[lo:hi], scores.tolist(), attacks[lo:hi],
                                           frames[lo:hi], paths[lo:hi], strict=True))
        if progress is not None:
            progress.update(task, advance=hi - lo)
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
