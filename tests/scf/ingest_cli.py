"""Helpers of the ingest tests: write an image, run `scf ingest` in-process, read back the rows, no Hub."""

from __future__ import annotations

from pathlib import Path


def write_image(path: Path, array) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def ingest(*args: str):
    """``scf ingest ARGS --no-detect --no-progress`` through click's test runner."""
    from click.testing import CliRunner

    from scf.cli import main

    return CliRunner().invoke(main, ["ingest", *args, "--no-detect", "--no-progress"])


def rows(out: Path) -> list[dict]:
    """The rows of an ingest output folder (a few columns), sorted by path."""
    import pyarrow.parquet as pq

    found = []
    for shard in sorted((out / "data").glob("*.parquet")):
        found += pq.read_table(shard, columns=["path", "label", "attack_type", "split", "frame_index",
                                               "video_id"]).to_pylist()
    return sorted(found, key=lambda r: r["path"])


class OfflineHfApi:
    """A stand-in for ``huggingface_hub.HfApi`` on a machine without network: every push fails to connect."""

    def __init__(self, *a, **kw):
        pass

    def create_repo(self, *a, **kw):
        raise ConnectionError("Name or service not known\nmore")
