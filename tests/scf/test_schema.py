"""The corpus contract: features, validators and their error messages."""

from __future__ import annotations

import pytest

from scf import schema


def _row(**over):
    row = {
        "label": 0, "attack_type": "print", "attack_detail": "A4", "source": "OULU-NPU", "subject_id": "1",
        "video_id": "1_1_01_2", "frame_index": 6, "split": "train", "path": "Train_files/1_1_01_2.avi#6",
    }
    row.update(over)
    return row


def _vqa(**over):
    caption = "a person holding a printed photo"
    row = _row()
    row.update(question=schema.QUESTION, judgment="No", interpretation=schema.interpretation_for(caption),
               caption=caption, caption_general=caption, captioner="c_s", captioner_general="c_g", keyword="photo")
    row["answer"] = schema.compose_answer(row["judgment"], row["interpretation"])
    row.update(over)
    return row


def test_real_is_one_everywhere():
    assert schema.LABEL_REAL == 1 and schema.LABEL_NAMES[schema.LABEL_REAL] == "real"
    assert schema.benchmark_features()["label"].names == ["fake", "real"]
    assert schema.judgment_for(1) == "Yes" and schema.judgment_for(0) == "No"


def test_vocabulary_covers_the_issue_minimum():
    assert {"live", "print", "replay", "mask", "mannequin", "makeup", "other"} <= set(schema.ATTACK_TYPES)


def test_features_have_every_column():
    assert list(schema.benchmark_features()) == list(schema.BENCHMARK_COLUMNS)
    assert list(schema.vqa_features()) == list(schema.VQA_COLUMNS)
    assert set(schema.BENCHMARK_COLUMNS) < set(schema.VQA_COLUMNS)


def test_answer_format_is_the_papers():
    interp = schema.interpretation_for("a man holding a phone screen.")
    assert interp == "This is a man holding a phone screen"
    assert schema.compose_answer("No", interp) == "No. This is a man holding a phone screen"
    assert schema.compose_answer("Yes", "") == "Yes"  # judgment-only corpus (the no-SCF ablation)


def test_valid_rows_pass():
    assert schema.validate_rows([_row(), _row(label=1, attack_type="live")]) == 2
    assert schema.validate_rows([_vqa()], "vqa") == 1


@pytest.mark.parametrize(
    ("bad", "column"),
    [
        ({"label": 2}, "label"),
        ({"attack_type": "deepfake"}, "attack_type"),
        ({"label": 1}, "attack_type"),  # a real row must be live
        ({"split": "val"}, "split"),
        ({"video_id": ""}, "video_id"),
        ({"frame_index": -1}, "frame_index"),
        ({"subject_id": 7}, "subject_id"),
    ],
)
def test_errors_name_file_column_and_row(bad, column):
    rows = [_row(), _row(), _row(**bad)]
    with pytest.raises(schema.SchemaError) as err:
        schema.validate_rows(rows, file="oulu/data/train-00000.parquet")
    msg = str(err.value)
    assert f"column '{column}'" in msg and "row 2" in msg and "oulu/data/train-00000.parquet" in msg
    assert err.value.column == column and err.value.row == 2


def test_vqa_rules():
    with pytest.raises(schema.SchemaError, match="column 'judgment'"):
        schema.validate_rows([_vqa(judgment="Yes")], "vqa")
    with pytest.raises(schema.SchemaError, match="column 'answer'"):
        schema.validate_rows([_vqa(answer="No")], "vqa")
    with pytest.raises(schema.SchemaError, match="column 'question'"):
        schema.validate_rows([_vqa(question="Real?")], "vqa")
    with pytest.raises(schema.SchemaError, match="column 'caption'.*missing"):
        row = _vqa()
        del row["caption"]
        schema.validate_rows([row], "vqa")


def test_validate_dataset_names_the_missing_column_and_bad_row():
    import datasets
    import numpy as np
    from PIL import Image

    img = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    rows = [dict(_row(), image=img), dict(_row(attack_type="paper"), image=img)]
    ds = datasets.Dataset.from_list(rows, features=schema.benchmark_features())
    ds = ds.cast_column("attack_type", datasets.Value("string"))
    with pytest.raises(schema.SchemaError, match=r"column 'attack_type', row 1"):
        schema.validate_dataset(ds, file="x")
    with pytest.raises(schema.SchemaError, match="column 'subject_id': missing"):
        schema.validate_dataset(ds.remove_columns("subject_id"), file="x")
    inverted = ds.cast_column("label", datasets.ClassLabel(names=["real", "fake"]))
    with pytest.raises(schema.SchemaError, match="real = 1"):
        schema.validate_dataset(inverted, file="x")


def test_load_table_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        schema.load_table(str(tmp_path / "nope"))


def test_load_table_sees_a_rewritten_folder(tmp_path):
    # Two folders of the same name and file names, and a folder rewritten in place: each load must return
    # what is on disk now, not a cached copy (datasets keys local caches on names and coarse metadata).
    import numpy as np
    from PIL import Image

    from scf.shards import ShardWriter

    img = Image.fromarray(np.zeros((4, 4, 3), np.uint8))

    def write(folder, n):
        with ShardWriter(folder, schema.benchmark_features(), shard_size=100) as w:
            for i in range(n):
                w.add(dict(_row(video_id=f"v{i}", path=f"p{i}"), image=img), "train")

    write(tmp_path / "a" / "ds", 3)
    write(tmp_path / "b" / "ds", 5)
    assert len(schema.load_table(str(tmp_path / "a" / "ds"))["train"]) == 3
    assert len(schema.load_table(str(tmp_path / "b" / "ds"))["train"]) == 5
    for f in (tmp_path / "a" / "ds" / "data").glob("*.parquet"):
        f.unlink()
    write(tmp_path / "a" / "ds", 4)
    assert len(schema.load_table(str(tmp_path / "a" / "ds"))["train"]) == 4


def test_load_table_keeps_one_cached_copy_per_folder_and_ignores_the_bookkeeping_files(tmp_path):
    """Review 15 H2: every load after an `scf ingest` rerun (card, summary, skip log rewritten) made another full
    Arrow copy in the datasets cache, and old copies were never removed (CelebA-Spoof: ~47 GB each)."""
    import os

    import datasets
    import numpy as np
    from filelock import FileLock
    from PIL import Image

    from scf.shards import ShardWriter

    img = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    mine, other = tmp_path / "mine", tmp_path / "other"

    def write(folder, start, n):
        with ShardWriter(folder, schema.benchmark_features(), shard_size=100) as w:
            for i in range(start, start + n):
                w.add(dict(_row(video_id=f"v{i}", path=f"p{i}"), image=img), "train")
        (folder / "README.md").write_text("---\nlicense: other\n---\n# rows: " + str(start + n) + "\n")
        for name in ("ingest_summary.json", "ingest_config.json", "skipped.jsonl"):
            (folder / name).write_text(f"{{\"written\": {start + n}}}\n")

    def copies(folder) -> list[str]:
        where = os.path.dirname(schema._local_cache_dir(folder))
        return sorted(os.listdir(where))

    def arrow_times(folder) -> list[int]:
        base = os.path.dirname(schema._local_cache_dir(folder))
        return sorted(os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(base) for f in fs
                      if f.endswith(".arrow"))

    write(mine, 0, 3)
    write(other, 0, 2)
    assert len(schema.load_table(str(mine))["train"]) == 3 and len(schema.load_table(str(other))["train"]) == 2
    first, converted = copies(mine), arrow_times(mine)
    assert len(first) == 1 and len(copies(other)) == 1  # one copy each, under a folder of its own
    assert schema._local_cache_dir(mine).parent != schema._local_cache_dir(other).parent
    assert schema._local_cache_dir(mine).parent.parent == datasets.config.HF_DATASETS_CACHE / "scf-local"
    write(mine, 3, 0)  # a rerun that adds nothing: card, summary, config and skip log rewritten
    assert len(schema.load_table(str(mine))["train"]) == 3
    assert copies(mine) == first and arrow_times(mine) == converted  # the same copy, not converted again
    os.utime(next((mine / "data").glob("*.parquet")))  # a shard rewritten (a prune) ...
    write(mine, 3, 2)  # ... and one added (a resumed ingest)
    assert len(schema.load_table(str(mine))["train"]) == 5  # what is on disk now
    assert len(copies(mine)) == 1 and copies(mine) != first  # the new copy only
    assert len(copies(other)) == 1 and len(schema.load_table(str(other))["train"]) == 2  # untouched

    # a copy that another process is converting right now (its datasets lock held) is left alone
    before = copies(mine)
    busy = os.path.join(os.path.dirname(schema._local_cache_dir(mine)), "0" * 16)
    os.makedirs(busy)
    open(os.path.join(busy, "old.arrow"), "w").close()
    os.utime(os.path.join(busy, "old.arrow"), ns=(1, 1))
    with FileLock(os.path.join(busy, "x_builder.lock")):
        schema.load_table(str(mine))
        assert copies(mine) == sorted([*before, "0" * 16])
    schema.load_table(str(mine))  # released: an older copy, removed
    assert copies(mine) == before


def test_load_table_reads_several_sources_as_configs(tmp_path):
    import numpy as np
    from PIL import Image

    from scf.shards import ShardWriter

    img = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    for source, n in (("OULU-NPU", 2), ("MSU-MFSD", 3)):
        with ShardWriter(tmp_path / source, schema.benchmark_features()) as w:
            for i in range(n):
                w.add(dict(_row(source=source, video_id=f"v{i}", path=f"{source}/p{i}"), image=img), "train")
    both = schema.load_table(str(tmp_path))
    assert sorted(set(both["train"]["source"])) == ["MSU-MFSD", "OULU-NPU"] and len(both["train"]) == 5
    assert set(schema.load_table(str(tmp_path), name="MSU-MFSD")["train"]["source"]) == {"MSU-MFSD"}


def test_shards_that_disagree_are_not_called_cut_short(tmp_path):
    """Review 7 #2: readable shards with other columns get one line saying they disagree, no 'delete it' advice."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scf.schema import SchemaError, load_table

    (tmp_path / "ds" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"path": ["a"], "label": [1]}), tmp_path / "ds/data/test-00000.parquet")
    pq.write_table(pa.table({"path": ["b"], "label": ["x"], "extra": [1.0]}), tmp_path / "ds/data/test-00001.parquet")
    with pytest.raises(SchemaError) as err:
        load_table(str(tmp_path / "ds"))
    text = str(err.value)
    assert "\n" not in text and "cannot be loaded together" in text and "disagree in columns or types" in text
    assert "cut short" not in text and "delete" not in text


def test_software_versions_record_the_toolkit_and_libraries():
    from importlib.metadata import version

    from click.testing import CliRunner

    from scf.cli import main

    record = schema.software_versions(extra=("no-such-distribution-xyz",))
    assert record["ifas-scf"] == version("ifas-scf")
    assert record["torch"] == version("torch")
    assert record["no-such-distribution-xyz"] == "not installed"
    assert list(record)[:4] == ["python", "ifas-scf", "ifas-model", "ifas-eval"]
    # the command names its distribution (the name "scf" on PyPI is another project)
    assert CliRunner().invoke(main, ["--version"]).output == f"scf (ifas-scf) {version('ifas-scf')}\n"


def test_load_table_names_a_missing_local_path_given_as_str_or_path(tmp_path):
    for missing in (tmp_path / "nope", str(tmp_path / "nope"), "nope", "./runs/nope"):
        with pytest.raises(FileNotFoundError, match="dataset not found: .*nope"):
            schema.load_table(missing)
