"""Resumable shard writing: complete shards only, nothing redone or duplicated after a kill."""

from __future__ import annotations

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
