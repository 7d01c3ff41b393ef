"""The `scf` command line: sample, ingest, caption."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scf")
def main() -> None:
    """Spoof-aware Captioning and Filtering (SCF) for interpretable face anti-spoofing."""
