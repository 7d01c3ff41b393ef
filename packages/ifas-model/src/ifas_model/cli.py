"""The `ifas-train` command line."""

from __future__ import annotations

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dataset", required=True, help="Hub id or local path of the scf VQA corpus.")
def main(dataset: str) -> None:
    """Train the I-FAS model with the Lopsided LM loss on an SCF VQA corpus."""
    raise click.ClickException("training is not implemented yet")
