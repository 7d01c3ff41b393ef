"""The `ifas-eval` command line."""

from __future__ import annotations

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--protocol", help="Protocol name.")
def main(protocol: str | None) -> None:
    """Score I-FAS checkpoints or score files on cross-domain FAS protocols."""
    raise click.ClickException("evaluation is not implemented yet")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1)
def predict(inputs: tuple[str, ...]) -> None:
    """Judge images, folders or videos with an I-FAS checkpoint; one JSON line per input."""
    raise click.ClickException("prediction is not implemented yet")
