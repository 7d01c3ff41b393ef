"""What a user sees when an ingest output folder was damaged, its inputs changed, or its run was killed."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def face():
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut()[20:260, 110:340], (115, 120))  # Eileen Collins, public domain


def write_image(path: Path, array) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def ingest(*args: str):
    from click.testing import CliRunner

    from scf.cli import main

    return CliRunner().invoke(main, ["ingest", *args, "--no-detect", "--no-progress"])


def rows(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    found = []
    for shard in sorted((out / "data").glob("*.parquet")):
        found += pq.read_table(shard, columns=["path", "label", "attack_type", "split", "frame_index"]).to_pylist()
    return sorted(found, key=lambda r: r["path"])


def test_a_truncated_shard_or_torn_skip_log_gives_one_line(tmp_path, face):
    """Review 6 H2: rerunning the same command over a damaged output folder names the file and what to do."""
    root = tmp_path / "imgs"
    for i in range(3):
        write_image(root / f"train/real/r{i}.png", face)
    (root / "train/real/bad.png").write_bytes(b"not an image")
    args = ["--source", "image-folder", "--root", str(root), "--out", str(tmp_path / "o"), "--shard-size", "1"]
    assert ingest(*args).exit_code == 0
    shard = tmp_path / "o/data/train-00001.parquet"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    r = ingest(*args)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.strip().splitlines() == [f"Error: {shard}: unreadable shard (ArrowInvalid: "
                                             + r.output.split("(ArrowInvalid: ", 1)[1].strip()]
    assert "delete it and rerun" in r.output
    shard.unlink()
    skipped = tmp_path / "o/skipped.jsonl"
    skipped.write_text(skipped.read_text()[:-10])  # the last line torn
    r = ingest(*args)
    assert r.exit_code == 0, r.output
    assert len(rows(tmp_path / "o")) == 3 and len(skipped.read_text().splitlines()) == 1
