"""What a user sees when an ingest output folder was damaged, its inputs changed, or its run was killed."""

from __future__ import annotations

import json

import pytest
from ingest_cli import ingest, rows, write_image  # tests/scf/ingest_cli.py


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


def test_an_edited_manifest_is_refused_and_an_older_record_without_hashes_still_resumes(tmp_path, face):
    """Review 5 #3a: rows already written keep the old labels, so a resume after editing the list is refused."""
    root = tmp_path / "imgs"
    write_image(root / "a.png", face)
    write_image(root / "b.png", face)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.png,1\nb.png,0\n")
    args = ["--source", "csv", "--root", str(root), "--list", str(manifest), "--out", str(tmp_path / "o")]
    assert ingest(*args).exit_code == 0
    config = tmp_path / "o/ingest_config.json"
    recorded = json.loads(config.read_text())
    assert list(recorded["list_sha256"]) == [str(manifest)]
    manifest.write_text("path,label\na.png,1\nb.png,1\n")  # b's label fixed
    r = ingest(*args)
    assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
    assert r.output == (f"Error: {manifest} changed since {tmp_path / 'o'} was written: rows already written keep "
                        "its old entries (labels, attack types, splits). Ingest into a new --out (or put the file "
                        "back as it was to resume)\n")
    assert json.loads(config.read_text()) == recorded
    assert [x["label"] for x in rows(tmp_path / "o")] == [1, 0]

    config.write_text(json.dumps({k: v for k, v in recorded.items() if k != "list_sha256"}))  # an older scf
    r = ingest(*args)
    assert r.exit_code == 0, r.output
    assert "list_sha256" in json.loads(config.read_text())  # recorded from now on


def test_rows_of_moved_files_are_reported_and_pruned_on_request(tmp_path, face):
    """Review 5 #3b: an image moved from print/ to real/ must not stay in the dataset with both labels."""
    root = tmp_path / "imgs"
    write_image(root / "train/real/r.png", face)
    write_image(root / "train/print/f.png", face)
    write_image(root / "train/print/g.png", face)
    args = ["--source", "image-folder", "--root", str(root), "--out", str(tmp_path / "o"), "--shard-size", "2"]
    assert ingest(*args).exit_code == 0
    (root / "train/print/f.png").rename(root / "train/real/f.png")  # it was a real face after all
    r = ingest(*args)
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1] == (
        "Error: 1 row(s) of 1 file(s) that this run no longer finds under --root (moved, renamed or deleted since "
        f"they were ingested, e.g. train/print/f.png) are still in {tmp_path / 'o'}: rerun with --prune-missing to "
        "drop them, or ingest into a new --out")
    summary = json.loads((tmp_path / "o/ingest_summary.json").read_text())
    assert summary["stale_rows"] == 1 and summary["stale_files"] == ["train/print/f.png"]
    r = ingest(*args, "--prune-missing")
    assert r.exit_code == 0 and "--prune-missing: dropped 1 row(s)" in r.output, r.output
    assert [(x["path"], x["label"]) for x in rows(tmp_path / "o")] == [
        ("train/print/g.png", 0), ("train/real/f.png", 1), ("train/real/r.png", 1)]
    assert ingest(*args).exit_code == 0  # nothing stale any more
    from scf.schema import load_table

    assert len(load_table(str(tmp_path / "o"))["train"]) == 3


def test_a_torn_summary_of_another_config_is_named(tmp_path, face):
    """Review 6 M1 (scf ingest): the parent card reads every config's ingest_summary.json; a torn one is named."""
    for name in ("a", "b"):
        write_image(tmp_path / name / "real/x.png", face)
    out = tmp_path / "hub"
    assert ingest("--source", "image-folder", "--root", str(tmp_path / "a"), "--out", str(out), "--config",
                  "a").exit_code == 0
    summary = out / "a/ingest_summary.json"
    summary.write_text(summary.read_text()[:40])
    r = ingest("--source", "image-folder", "--root", str(tmp_path / "b"), "--out", str(out), "--config", "b")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.strip().splitlines()[-1].startswith(f"Error: {summary}: not valid JSON (")
    assert r.output.strip().endswith("rerun the scf ingest of config 'a' (nothing is redone) to rewrite it, then "
                                     "this one")
    assert not list(out.glob("*/.*.tmp"))


@pytest.mark.parametrize("source", ["csv", "casia-fas-list"])
def test_a_listed_file_deleted_after_ingest_is_stale_and_pruned_and_one_put_back_is_ingested(tmp_path, face, source):
    """Review 8 #1 and #5: list readers report a vanished entry; --prune-missing drops it; a file back is read."""
    root = tmp_path / "root"
    write_image(root / "a.png", face)
    write_image(root / "b.png", face[::-1])
    write_image(root / "c.png", face[:, ::-1])
    lst = tmp_path / ("m.csv" if source == "csv" else "list.txt")
    lst.write_text("path,label,split\na.png,1,train\nb.png,0,train\nc.png,0,train\n" if source == "csv" else
                   "a.png 0\nb.png 1\nc.png 1\n")
    args = ["--source", source, "--root", str(root), "--list", str(lst), "--out", str(tmp_path / "o")]
    if source != "csv":
        args += ["--label-polarity", "live0"]
    assert ingest(*args).exit_code == 0
    b = (root / "b.png").read_bytes()
    (root / "b.png").unlink()
    r = ingest(*args)
    assert r.exit_code == 1 and r.output.strip().splitlines()[-1].startswith(
        "Error: 1 row(s) of 1 file(s) that this run no longer finds under --root (moved, renamed or deleted since "
        "they were ingested, e.g. b.png)"), r.output
    r = ingest(*args, "--prune-missing")
    assert r.exit_code == 0 and "--prune-missing: dropped 1 row(s)" in r.output, r.output
    assert [x["path"] for x in rows(tmp_path / "o")] == ["a.png", "c.png"]
    summary = json.loads((tmp_path / "o/ingest_summary.json").read_text())
    assert summary["skipped"] == {"missing file": 1} and summary["files_with_rows"] == 2
    (root / "b.png").write_bytes(b)  # the disk is mounted again
    assert ingest(*args).exit_code == 0
    assert [x["path"] for x in rows(tmp_path / "o")] == ["a.png", "b.png", "c.png"]
    assert json.loads((tmp_path / "o/ingest_summary.json").read_text())["skipped"] == {}


def test_a_resume_with_a_wrong_root_is_refused_before_any_work(tmp_path, face):
    """Review 8 #2: --root B into the folder of --root A must not ingest B first and then advise pruning A."""
    for name, cls in (("A", "real"), ("B", "print")):
        for i in range(3):
            write_image(tmp_path / name / "train" / cls / f"{name}{i}.png", face)
    out = tmp_path / "o"
    assert ingest("--source", "image-folder", "--root", str(tmp_path / "A"), "--out", str(out)).exit_code == 0
    for extra in ((), ("--prune-missing",)):
        r = ingest("--source", "image-folder", "--root", str(tmp_path / "B"), "--out", str(out), *extra)
        assert r.exit_code == 1
        assert r.output.strip().splitlines()[-1] == (
            f"Error: {out}: 3 of 3 files its rows come from are not under --root {tmp_path / 'B'} (e.g. "
            f"train/real/A0.png) (its rows were written from --root {tmp_path / 'A'}): is --root right? A moved "
            "dataset keeps its relative paths; to start over, ingest into a new --out")
        assert [x["path"] for x in rows(out)] == [f"train/real/A{i}.png" for i in range(3)]
    config = json.loads((out / "ingest_config.json").read_text())
    assert config["root"] == str((tmp_path / "A").resolve())  # the record still names the right root


def test_a_manifest_with_rows_appended_or_copied_elsewhere_resumes(tmp_path, face):
    """Review 8 #8: appended rows are new work (the recorded hash covers the old prefix); the same manifest at
    another path resumes; an edit of an earlier row is still refused."""
    root = tmp_path / "mine"
    for name in ("a", "b", "c"):
        write_image(root / f"{name}.png", face)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,split\na.png,1,train\nb.png,0,train\n")
    args = ["--source", "csv", "--root", str(root), "--out", str(tmp_path / "o")]
    assert ingest(*args, "--list", str(manifest)).exit_code == 0
    with manifest.open("a") as f:
        f.write("c.png,0,train\n")  # new captures
    r = ingest(*args, "--list", str(manifest))
    assert r.exit_code == 0, r.output
    assert [x["path"] for x in rows(tmp_path / "o")] == ["a.png", "b.png", "c.png"]
    moved = tmp_path / "elsewhere" / "m.csv"
    moved.parent.mkdir()
    moved.write_bytes(manifest.read_bytes())
    assert ingest(*args, "--list", str(moved)).exit_code == 0, "an identical copy at another path resumes"
    moved.write_text("path,label,split\na.png,0,train\nb.png,0,train\nc.png,0,train\nd.png,0,train\n")
    r = ingest(*args, "--list", str(moved))
    assert r.exit_code == 1 and r.output.strip().splitlines()[-1].startswith(f"Error: {moved} changed since"), r.output


def test_listed_files_coming_back_are_ingested_with_one_rewrite_of_the_skip_log(tmp_path, monkeypatch):
    """Review 15 H1: a rerun after n listed files come back rewrote skipped.jsonl n times (quadratic: 8,000 files
    took 227 s). Now one rewrite per run; a kill before it leaves the last complete run's log, and the next run
    ends with rows for the files back and 'missing file' for exactly those still missing."""
    import numpy as np

    from scf.shards import SkipLog

    n = 300
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(src / f"f{i:03d}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,split\n" + "".join(f"f{i:03d}.png,{i % 2},train\n" for i in range(n)))
    root, out = tmp_path / "root", tmp_path / "o"
    root.mkdir()
    args = ["--source", "csv", "--list", str(manifest), "--root", str(root), "--out", str(out), "--size", "16"]
    r = ingest(*args)  # the disk is not mounted yet: every entry is a missing file
    assert r.exit_code == 1 and "mostly 'missing file' (300)" in r.output, r.output

    def log() -> dict[str, str]:
        return {k: e["reason"] for k, e in SkipLog(out / "skipped.jsonl").entries.items()}

    for i in range(200):  # two thirds of the copy has finished
        (src / f"f{i:03d}.png").rename(root / f"f{i:03d}.png")

    def killed(self):
        raise KeyboardInterrupt  # killed after the last shard, before the skip log is rewritten

    with monkeypatch.context() as m:
        m.setattr(SkipLog, "save", killed)
        assert ingest(*args).exit_code == 1
    assert len(rows(out)) == 200 and set(log().values()) == {"missing file"} and len(log()) == n  # as before

    rewrites = []
    rewrite = SkipLog._rewrite
    monkeypatch.setattr(SkipLog, "_rewrite", lambda self, lines: (rewrites.append(1), rewrite(self, lines)))
    r = ingest(*args)
    assert r.exit_code == 0, r.output
    assert len(rewrites) == 1
    assert len(rows(out)) == 200 and log() == {f"f{i:03d}.png": "missing file" for i in range(200, n)}
    summary = json.loads((out / "ingest_summary.json").read_text())
    assert summary["skipped"] == {"missing file": 100} and summary["files_with_rows"] == 200
    assert summary["rows_this_run"] == 0  # the killed run's rows were kept, nothing redone

    for i in range(200, n):
        (src / f"f{i:03d}.png").rename(root / f"f{i:03d}.png")
    rewrites.clear()
    assert ingest(*args).exit_code == 0
    assert len(rewrites) == 1 and len(rows(out)) == n and log() == {}
    summary = json.loads((out / "ingest_summary.json").read_text())
    assert summary["skipped"] == {} and summary["files_with_rows"] == n and summary["rows_this_run"] == 100
