"""Resumable shard writing: complete shards only, nothing redone or duplicated after a kill."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from PIL import Image

from scf import schema
from scf.shards import ShardWriter, SkipLog, shard_splits

IMG = Image.fromarray(np.zeros((8, 8, 3), np.uint8))


def _row(i: int) -> dict:
    return {"image": IMG, "label": i % 2, "attack_type": "live" if i % 2 else "replay", "attack_detail": "",
            "source": "t", "subject_id": "s", "video_id": f"v{i}", "frame_index": 0,
            "split": "train", "path": f"f{i}.png"}


def test_kill_and_resume_loses_at_most_the_open_shard(tmp_path):
    feats = schema.benchmark_features()
    writer = ShardWriter(tmp_path, feats, shard_size=4)
    for i in range(10):
        writer.add(_row(i), "train")
    # simulated kill: no close(); rows 8 and 9 were still buffered, and a half-written shard lies around
    (tmp_path / "data" / "train-00002.parquet.tmp").write_bytes(b"partial")
    resumed = ShardWriter(tmp_path, feats, shard_size=4)
    assert resumed.done_keys == {f"f{i}.png" for i in range(8)}
    with resumed:
        for i in range(10):
            if f"f{i}.png" not in resumed.done_keys:
                resumed.add(_row(i), "train")
    loaded = datasets.load_dataset(str(tmp_path))["train"]
    assert sorted(loaded["path"]) == sorted(f"f{i}.png" for i in range(10))  # all, once each
    assert not list((tmp_path / "data").glob("*.tmp"))
    assert shard_splits(tmp_path) == ["train"]


def test_writer_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="shard_size"):
        ShardWriter(tmp_path, schema.benchmark_features(), shard_size=0)
    with pytest.raises(ValueError, match="key column"):
        ShardWriter(tmp_path, schema.benchmark_features(), key_column="nope")


def test_skip_log_counts_reasons_once_across_runs(tmp_path):
    log = SkipLog(tmp_path / "skipped.jsonl")
    log.add("a.avi", "no face", "frames 6, 7, 5 searched")
    log.add("b.png", "corrupt image")
    log.add("a.avi", "no face")
    again = SkipLog(tmp_path / "skipped.jsonl")
    again.add("b.png", "corrupt image")
    assert again.reasons() == {"corrupt image": 1, "no face": 1}


def test_a_killed_writes_temporary_never_breaks_load_dataset(tmp_path):
    """Review 6 M4: the temporary of a shard being written is a dot-file, which `datasets` does not read."""
    from scf.schema import load_table

    with ShardWriter(tmp_path, schema.benchmark_features(), shard_size=2) as w:
        for i in range(4):
            w.add(_row(i), "train")
    data = tmp_path / "data"
    (data / ".train-00002.parquet.tmp").write_bytes(b"PAR1 half a shard")  # a kill in the middle of a write
    assert len(load_table(str(tmp_path))["train"]) == 4
    (data / "train-00003.parquet.tmp").write_bytes(b"PAR1")  # the name older versions used: cleaned up too
    ShardWriter(tmp_path, schema.benchmark_features(), shard_size=2)
    assert sorted(p.name for p in data.iterdir()) == ["train-00000.parquet", "train-00001.parquet"]


def test_an_unreadable_shard_is_named_with_what_to_do(tmp_path):
    """Review 6 H2: a truncated shard (full disk, bad copy) stops the resume with its name, not a traceback."""
    from scf.shards import ShardError

    with ShardWriter(tmp_path, schema.benchmark_features(), shard_size=2) as w:
        for i in range(4):
            w.add(_row(i), "train")
    shard = tmp_path / "data" / "train-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:200])
    with pytest.raises(ShardError, match=r"train-00001\.parquet: unreadable shard .*delete it and rerun"):
        ShardWriter(tmp_path, schema.benchmark_features())
    shard.write_bytes(b"")
    with pytest.raises(ShardError, match="train-00001.parquet: unreadable shard"):
        ShardWriter(tmp_path, schema.benchmark_features())
    shard.unlink()  # what the message says: its rows are simply not done
    assert ShardWriter(tmp_path, schema.benchmark_features()).done_keys == {"f0.png", "f1.png"}


def test_skip_log_drops_a_torn_last_line_and_names_a_bad_line_elsewhere(tmp_path):
    from scf.shards import ShardError

    path = tmp_path / "skipped.jsonl"
    log = SkipLog(path)
    log.add("a.png", "corrupt image")
    with path.open("a") as f:
        f.write('{"key": "b.png", "reas')  # a kill in the middle of a line
    again = SkipLog(path)
    assert set(again.entries) == {"a.png"}
    again.add("b.png", "corrupt image")  # tried again, and appended on a line of its own
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == ["a.png", "b.png"]
    path.write_text('not json\n{"key": "a.png", "reason": "x", "detail": ""}\n')
    with pytest.raises(ShardError, match=r"skipped\.jsonl:1: not a skip record"):
        SkipLog(path)


def test_skip_log_discards_reach_the_file_in_one_rewrite_at_save(tmp_path, monkeypatch):
    """Review 15 H1: forgetting n skips costs one rewrite of the file, not n; before `save` the file is unchanged."""
    path = tmp_path / "skipped.jsonl"
    log = SkipLog(path)
    for i in range(300):
        log.add(f"f{i}.png", "missing file" if i % 3 else "corrupt image")
    rewrites = []
    monkeypatch.setattr(SkipLog, "_rewrite", lambda self, lines: rewrites.append(list(lines)))
    dropped = log.discard_where(lambda e: e["reason"] == "missing file")
    log.discard("f0.png")
    assert len(dropped) == 200 and not rewrites and len(SkipLog(path).entries) == 300  # a kill here: no change
    log.add("f1.png", "corrupt image")  # logged again after its discard: appended, and the later line wins
    assert SkipLog(path).entries["f1.png"]["reason"] == "corrupt image"
    monkeypatch.undo()
    log.save()
    log.save()  # nothing new to write
    assert sorted(SkipLog(path).entries) == sorted(f"f{i}.png" for i in [1, *range(3, 300, 3)])
    assert len(path.read_text().splitlines()) == 100


def test_a_process_that_reads_shards_and_exits_never_aborts_at_exit(tmp_path):
    """review21 M2: read_parquet handed pyarrow a Python file and let its dataset scanner pre-buffer it; the I/O
    threads sometimes released the read chunks (Python bytes) while the interpreter exited, and the process
    aborted with exit 134 ("terminate called without an active exception") after its work was done: 13 of 60
    runs of this script. The read is now synchronous on the calling thread."""
    import subprocess
    import sys

    import pyarrow as pa

    from scf.shards import write_parquet

    n = 64
    table = pa.table({"label": [i % 2 for i in range(n)], "path": [f"v{i}.avi" for i in range(n)],
                      "image": [bytes(4096) for _ in range(n)]})
    for k in range(2):
        write_parquet(table, tmp_path / f"train-{k:05d}.parquet")
    script = ("import sys, glob\nfrom scf.shards import read_parquet\n"
              "for p in sorted(glob.glob(sys.argv[1] + '/*.parquet')):\n"
              "    assert read_parquet(p, columns=['label', 'path']).num_rows == 64\n")
    codes = []
    for _ in range(6):  # 4 processes at a time, 24 in all
        procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stderr=subprocess.PIPE)
                 for _ in range(4)]
        codes += [(p.wait(timeout=120), p.stderr.read().decode()[-300:]) for p in procs]
    assert [c for c in codes if c[0] != 0] == []
