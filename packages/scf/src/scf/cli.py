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
