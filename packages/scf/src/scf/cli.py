"""The `scf` command line: sample, ingest, caption."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scf")
def main() -> None:
    """Spoof-aware Captioning and Filtering (SCF) for interpretable face anti-spoofing."""
    import logging

    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)])



@main.command("sample")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder to write the dataset to.")
@click.option("--seed", type=int, default=0, show_default=True, help="The sample is deterministic for a seed.")
@click.option("--frames-per-video", type=click.IntRange(1, 50), default=2, show_default=True)
def sample_command(out: str, seed: int, frames_per_video: int) -> None:
    """Write the embedded SYNTHETIC sample as a benchmark dataset (offline, no licence needed).

    Public-domain face photos rendered as print and replay attacks in four synthetic capture domains.
    """
    from rich.console import Console

    from scf.sample import write_sample

    path = write_sample(out, seed, frames_per_video=frames_per_video)
    Console().print(f"[bold]synthetic sample[/] (seed {seed}) written to {path}; "
                    f"load it with datasets.load_dataset({str(path)!r})")


@main.command("ingest")
@click.option("--source", default=None, help="Dataset or generic reader (see --list-sources).")
@click.option("--root", type=click.Path(), default=None, help="The dataset as you hold it.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Dataset folder (data/<split>-NNNNN.parquet + README.md); with --config, the parent folder.")
@click.option("--config", "config_name", default=None,
              help="Write to OUT/<CONFIG>/ as one config of a multi-source Hub dataset (OUT/README.md lists them).")
@click.option("--list", "lists", multiple=True, type=click.Path(dir_okay=False),
              help="List, protocol or manifest file (repeatable): CASIA-FAS lists, FLIP txt lists, WMCA CSV, manifest.")
@click.option("--label-polarity", type=click.Choice(["live0", "live1"]), default=None,
              help="CASIA-FAS lists: which list label means live (required with those lists).")
@click.option("--split", type=click.Choice(["train", "dev", "test"]), default=None,
              help="Split for items that no naming rule or protocol file places.")
@click.option("--frames", default="flip", show_default=True,
              help="Video frames: 'flip' (frames 6 and 6 + n/2) or a number k of equidistant frames.")
@click.option("--detect/--no-detect", default=None,
              help="Face detection (default: on, off for pre-cropped readers flip-mcio and casia-fas-list).")
@click.option("--margin", type=float, default=0.2, show_default=True, help="Crop margin, fraction of the face box.")
@click.option("--size", type=int, default=224, show_default=True, help="Output side in pixels.")
@click.option("--neighbours", type=click.IntRange(0), default=3, show_default=True,
              help="Frames tried on each side of a sampled frame without a face.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="Worker processes.")
@click.option("--shard-size", type=click.IntRange(1), default=1000, show_default=True, help="Rows per parquet shard.")
@click.option("--image-format", type=click.Choice(["png", "jpeg"]), default="png", show_default=True)
@click.option("--push-to-hub", "push_to_hub", default=None, metavar="ORG/NAME",
              help="Upload OUT to this Hub dataset repo when done (token from HF_TOKEN or huggingface-cli login).")
@click.option("--private", is_flag=True, help="Create the Hub repo private.")
@click.option("--list-sources", is_flag=True, help="List the sources and their expected layouts, then exit.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def ingest_command(source: str | None, root: str | None, out: str | None, config_name: str | None,
                   lists: tuple[str, ...], label_polarity: str | None, split: str | None, frames: str,
                   detect: bool | None, margin: float, size: int, neighbours: int, workers: int, shard_size: int,
                   image_format: str, push_to_hub: str | None, private: bool, list_sources: bool,
                   no_progress: bool) -> None:
    """Turn a FAS dataset (as delivered, or as FLIP / CASIA-FAS lists) into the benchmark dataset.

    Resumable: rerun the same command after an interruption. See docs/ingest.md.
    """
    from scf.ingest.command import ingest_main

    ingest_main(source=source, root=root, out=out, config_name=config_name, lists=lists,
                label_polarity=label_polarity, split=split, frames=frames, detect=detect, margin=margin,
                size=size, neighbours=neighbours, workers=workers, shard_size=shard_size,
                image_format=image_format, push_to_hub=push_to_hub, private=private,
                list_sources=list_sources, no_progress=no_progress)
