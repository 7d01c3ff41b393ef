"""The body of ``scf ingest`` (the click command in `scf.cli` imports this lazily): options -> run -> report."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

logger = logging.getLogger(__name__)


def list_sources_table():  # noqa: ANN201 - rich.table.Table
    """A rich table of the sources: name, dataset, pre-cropped, expected layout."""
    from rich.table import Table

    from .registry import SOURCES

    table = Table(title="scf ingest --source NAME",
                  caption="detect: face detection by default (--detect / --no-detect override it). on*: off when "
                          "the reader is given CASIA-FAS --list files (they list pre-cropped frames); OULU-NPU "
                          "protocol files and the WMCA grand-test CSV name raw videos, so detection stays on.",
                  caption_justify="left")
    # wrap (and fold long paths), never "…": a layout cut short in an 80-column terminal is useless
    table.add_column("name", no_wrap=True)
    table.add_column("dataset", overflow="fold", max_width=14)
    table.add_column("detect", no_wrap=True)
    table.add_column("expected layout under --root", overflow="fold", ratio=1)
    for name, cls in SOURCES.items():
        table.add_row(name, cls.title, _detect_default(cls), cls.layout)
    return table


def _detect_default(cls: type) -> str:
    """The ``detect`` cell of `list_sources_table`: ``off`` (pre-cropped reader), ``on*`` (a dataset reader, off
    with CASIA-FAS ``--list`` files: `DatasetReader.precropped_for`) or ``on``."""
    from .readers import DatasetReader

    if cls.precropped:
        return "off"
    return "on*" if issubclass(cls, DatasetReader) else "on"


def no_rows_message(summary, folder: Path) -> str:  # noqa: ANN001 - runner.IngestSummary
    """The one line ``scf ingest`` exits with when its output folder holds no row: the main skip reason."""
    if not summary.skipped:
        return (f"0 rows written to {folder}: no file of {summary.title} found under --root "
                "(scf ingest --list-sources shows the expected layout)")
    reason, count = max(summary.skipped.items(), key=lambda kv: kv[1])
    return (f"0 rows written to {folder}: {summary.skipped_total} item(s) skipped, mostly {reason!r} ({count}); "
            f"see {folder / 'skipped.jsonl'}")


def read_errors_message(summary, folder: Path) -> str:  # noqa: ANN001 - runner.IngestSummary
    """The one line ``scf ingest`` exits with when inputs could not be read (I/O errors, `worker.READ_ERROR`)."""
    from .worker import READ_ERROR

    n = summary.skipped.get(READ_ERROR, len(summary.read_errors))
    return (f"{n} file(s) could not be read (I/O errors, e.g. {summary.read_errors[0]}): the {summary.rows_total} "
            f"row(s) written to {folder} are kept; rerun the same command to retry them (nothing else is redone). "
            "A file that fails every time: check the disk or mount it lives on")


def permission_denied_message(summary, folder: Path) -> str:  # noqa: ANN001 - runner.IngestSummary
    """The line ``scf ingest`` prints (exit status 0) when inputs could not be read for lack of permission
    (EACCES, EPERM: `worker.PERMISSION_DENIED`): how many, one of them, and how to get them in (rerun)."""
    from .worker import PERMISSION_DENIED

    n = summary.skipped.get(PERMISSION_DENIED, len(summary.permission_denied))
    return (f"warning: {n} file(s) could not be read for lack of permission (e.g. {summary.permission_denied[0]}) "
            f"and are skipped ({PERMISSION_DENIED!r} in {folder / 'skipped.jsonl'}); the rows of the other files are "
            "written. Give this user read access (chmod/chown), then rerun the same command: those files are read "
            "again (nothing else is redone)")


def ingest_main(*, source: str | None, root: str | None, out: str | None, config_name: str | None,
                source_name: str | None = None, lists: tuple[str, ...], label_polarity: str | None, split: str | None,
                celeba_labels: tuple[str, ...] = (), frames: str,
                detect: bool | None, margin: float, size: int, neighbours: int, workers: int, shard_size: int,
                image_format: str, push_to_hub: str | None, public: bool = False, private: bool = False,
                list_sources: bool, no_progress: bool, prune_missing: bool = False) -> None:
    """Run ``scf ingest``; every user error becomes a one-line `click.ClickException`.

    The Hub repository of ``--push-to-hub`` is created private unless ``public`` (``--public``); ``private``
    (``--private``, hidden) is accepted so that older commands still run, and changes nothing.
    """
    from rich.console import Console

    from scf.shards import ShardError

    from .base import IngestError
    from .card import push_to_hub as push
    from .card import summary_table
    from .runner import IngestConfig, run_ingest

    console = Console()
    if list_sources:
        console.print(list_sources_table())
        return
    missing = [flag for flag, value in (("--source", source), ("--root", root), ("--out", out)) if not value]
    if missing:
        raise click.ClickException(f"missing option(s) {', '.join(missing)} (or --list-sources)")
    if public and private:
        raise click.ClickException("--public and --private contradict each other (private is the default)")
    try:
        config = IngestConfig(source=source, root=Path(root), out=Path(out), config_name=config_name,
                              lists=tuple(Path(p) for p in lists), label_polarity=label_polarity, split=split,
                              celeba_labels=tuple(Path(p) for p in celeba_labels),
                              frames=frames, detect=detect, margin=margin, size=size, neighbours=neighbours,
                              workers=workers, shard_size=shard_size, image_format=image_format,
                              source_name=source_name, prune_missing=prune_missing)
        summary = run_ingest(config, show_progress=not no_progress)
    except (IngestError, ShardError) as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:  # reading an input (the output's own errors are IngestErrors naming the folder)
        where = f"{os.fsdecode(e.filename)}: " if e.filename else ""
        raise click.ClickException(f"{where}{e.strerror or e}") from e
    console.print(summary_table(summary))
    for note in summary.notes:
        console.print(f"note: {note}", soft_wrap=True)
    if summary.permission_denied:
        console.print(permission_denied_message(summary, config.dataset_dir), soft_wrap=True, markup=False,
                      highlight=False)
    if summary.read_errors:
        raise click.ClickException(read_errors_message(summary, config.dataset_dir))
    if summary.rows_total == 0:
        raise click.ClickException(no_rows_message(summary, config.dataset_dir))
    if summary.pruned_rows:
        console.print(f"--prune-missing: dropped {summary.pruned_rows} row(s) of files no longer found")
    if summary.stale_rows:
        raise click.ClickException(
            f"{summary.stale_rows} row(s) of {len(summary.stale_files)} file(s) that this run no longer finds under "
            f"--root (moved, renamed or deleted since they were ingested, e.g. {summary.stale_files[0]}) are still "
            f"in {config.dataset_dir}: rerun with --prune-missing to drop them, or ingest into a new --out")
    if summary.unaccounted:
        raise click.ClickException(f"{len(summary.unaccounted)} file(s) have neither rows nor a skip record "
                                   f"(e.g. {summary.unaccounted[0]}); this is a bug, please report it")
    console.print(f"written to {config.out}; load it with datasets.load_dataset({str(config.out)!r}"
                  + (f", {config_name!r})" if config_name else ")"))
    if push_to_hub:
        try:
            url = push(config.out, push_to_hub, private=not public)
        except Exception as e:  # noqa: BLE001 - network / auth errors become one line (no token in them)
            from scf.hub import hf_upload_advice, stage_write_failure

            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            upload = f"or {hf_upload_advice('dataset', push_to_hub, config.out, private=not public)}"
            head = stage_write_failure(e, config.out) or f"push to {push_to_hub} failed: {type(e).__name__}: {first}"
            raise click.ClickException(
                f"{head}; the dataset is in {config.out}: rerun the same command to retry (nothing is ingested "
                f"again), {upload}") from e
        console.print(f"pushed to {url} ({'public' if public else 'private'} repository)")
