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


PARENT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from scf.ingest.worker import init_worker

if __name__ == "__main__":
    pool = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                               initializer=init_worker, initargs=(os.getpid(),))
    pids = {pool.submit(os.getpid).result() for _ in range(8)}
    pool.submit(time.sleep, 600)  # a worker busy with a long item when the parent dies
    print(" ".join(map(str, sorted(pids))), flush=True)
    time.sleep(600)
"""


def test_workers_end_when_a_killed_ingest_leaves_them_behind(tmp_path):
    """Review 6 M3: kill -9 of the parent (OOM killer, preemption) must not leave the workers running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert workers and parent.pid not in workers
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()

        def alive(pid):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            with open(f"/proc/{pid}/stat") as f:  # a zombie (reaped later by init) is not running
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"

        deadline = time.monotonic() + 15
        while any(alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p for p in workers if alive(p)]
        for p in left:  # never leave them running, even when the test fails
            os.kill(p, signal.SIGKILL)
        assert not left, f"workers {left} outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()
