"""Review 25: what a user sees when the disk or the network fails in the middle of a long scf job."""

from __future__ import annotations

import errno
import json

from ingest_cli import ingest, rows, write_image  # tests/scf/ingest_cli.py


def _eio(path) -> OSError:
    return OSError(errno.EIO, "Input/output error", str(path))


def test_an_input_read_failing_with_an_io_error_is_retried_by_the_rerun(tmp_path, face, monkeypatch):
    """H1: an image whose read fails with EIO (an NFS hiccup) is not a permanent "corrupt image" skip: the run
    exits 1 naming it, keeps the other rows, and the same command on a healthy disk ingests it. A file that is
    really broken stays skipped."""
    from PIL import Image

    root = tmp_path / "imgs"
    for i in range(3):
        write_image(root / f"train/real/r{i}.png", face)
    write_image(root / "train/real/cut.jpg", face)
    cut = root / "train/real/cut.jpg"
    cut.write_bytes(cut.read_bytes()[:400])  # a decoder error ("image file is truncated"): no errno
    real_open = Image.open

    def failing_open(fp, *a, **kw):
        if str(fp).endswith("r1.png"):
            raise _eio(fp)
        return real_open(fp, *a, **kw)

    monkeypatch.setattr(Image, "open", failing_open)
    out = tmp_path / "o"
    args = ["--source", "image-folder", "--root", str(root), "--out", str(out), "--shard-size", "1"]
    r = ingest(*args)
    assert r.exit_code == 1, r.output
    last = r.output.strip().splitlines()[-1]
    assert last == (f"Error: 1 file(s) could not be read (I/O errors, e.g. train/real/r1.png: Input/output error "
                    f"(EIO)): the 2 row(s) written to {out} are kept; rerun the same command to retry them "
                    "(nothing else is redone). A file that fails every time: check the disk or mount it lives on")
    log = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert {(e["key"], e["reason"]) for e in log} == {("train/real/r1.png", "I/O error"),
                                                      ("train/real/cut.jpg", "corrupt image")}
    monkeypatch.setattr(Image, "open", real_open)  # the disk is back
    r = ingest(*args)
    assert r.exit_code == 0, r.output
    assert [x["path"] for x in rows(out)] == ["train/real/r0.png", "train/real/r1.png", "train/real/r2.png"]
    log = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(e["key"], e["reason"]) for e in log] == [("train/real/cut.jpg", "corrupt image")]


def _video_unreadable(monkeypatch, worker, name: str, error) -> None:
    """The video ``name`` decodes to nothing in OpenCV and its check read raises ``error(path)``."""
    real_open, real_map = open, worker.video.read_frame_map

    def failing_open(path, *a, **kw):
        if str(path).endswith(name):
            raise error(path)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(worker.video, "read_frame_map",
                        lambda path, idx: {} if str(path).endswith(name) else real_map(path, idx))
    monkeypatch.setattr(worker, "open", failing_open, raising=False)


def test_a_video_whose_file_cannot_be_read_is_retried_and_a_broken_one_stays_skipped(tmp_path, face, monkeypatch):
    """H1 for videos: OpenCV names no errno, so when it fails the file is read once more; an I/O error there
    makes the video an "I/O error" skip that the rerun retries; a file that reads but does not decode stays an
    "unreadable video" skip."""
    from test_ingest_run import write_video

    from scf.ingest import worker

    root = tmp_path / "vids"
    write_video(root / "train/replay/v1.avi", face, n=8)
    (root / "train/replay/bad.avi").write_bytes(b"RIFF" + b"\0" * 300)
    _video_unreadable(monkeypatch, worker, "v1.avi", _eio)
    out = tmp_path / "o"
    args = ["--source", "image-folder", "--root", str(root), "--out", str(out), "--frames", "2"]
    r = ingest(*args)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "1 file(s) could not be read (I/O errors, e.g. train/replay/v1.avi: Input/output error (EIO))" in r.output
    monkeypatch.undo()
    r = ingest(*args)
    assert r.exit_code == 0, r.output
    assert [x["path"] for x in rows(out)] == ["train/replay/v1.avi#2", "train/replay/v1.avi#6"]
    log = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(e["key"], e["reason"]) for e in log] == [("train/replay/bad.avi", "unreadable video")]


class _RecordingHfApi:
    """A stand-in for ``huggingface_hub.HfApi`` that records the pushes (no network)."""

    pushes: list[str] = []

    def __init__(self, *a, **kw):
        pass

    def create_repo(self, repo_id, *a, **kw):
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, *a, repo_id, folder_path, **kw):
        self.pushes.append(repo_id)
        return type("Commit", (), {"oid": "abc", "commit_url": "u"})()

    def __getattr__(self, name):
        return lambda *a, **kw: None


def _denied(path) -> OSError:
    return PermissionError(errno.EACCES, "Permission denied", str(path))


def test_an_input_without_read_permission_is_skipped_the_run_exits_0_and_pushes(tmp_path, face, monkeypatch):
    """review26 M1: a file this user may not read (EACCES; root ignores chmod, so Image.open is made to refuse)
    is a "permission denied" skip, not an "I/O error" retried forever: the run exits 0, pushes the other rows and
    prints how many files were refused and that rerunning the same command after chmod reads them again; it
    does. An EIO beside it still fails the run (transient)."""
    import huggingface_hub
    from PIL import Image

    root = tmp_path / "imgs"
    for i in range(3):
        write_image(root / f"train/real/r{i}.png", face)
    real_open = Image.open
    refused = {"r1.png"}

    def open_(fp, *a, **kw):
        if str(fp).rsplit("/", 1)[-1] in refused:
            raise _denied(fp)
        return real_open(fp, *a, **kw)

    monkeypatch.setattr(Image, "open", open_)
    monkeypatch.setattr(huggingface_hub, "HfApi", _RecordingHfApi)
    monkeypatch.setattr(_RecordingHfApi, "pushes", [])
    out = tmp_path / "o"
    args = ["--source", "image-folder", "--root", str(root), "--out", str(out), "--push-to-hub", "me/x"]
    r = ingest(*args)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert _RecordingHfApi.pushes == ["me/x"]
    said = " ".join(r.output.split())
    assert (f"warning: 1 file(s) could not be read for lack of permission (e.g. train/real/r1.png: Permission "
            f"denied (EACCES)) and are skipped ('permission denied' in {out / 'skipped.jsonl'}); the rows of the "
            "other files are written. Give this user read access (chmod/chown), then rerun the same command: those "
            "files are read again (nothing else is redone)") in said, r.output
    assert "skipped: permission denied" in r.output  # the summary table's count
    assert json.loads((out / "ingest_summary.json").read_text())["permission_denied"] == [
        "train/real/r1.png: Permission denied (EACCES)"]
    log = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(e["key"], e["reason"]) for e in log] == [("train/real/r1.png", "permission denied")]
    assert len(rows(out)) == 2

    refused.clear()  # chmod done: the same command reads the file and pushes again
    r = ingest(*args)
    assert r.exit_code == 0, r.output
    assert "lack of permission" not in r.output
    assert [x["path"] for x in rows(out)] == [f"train/real/r{i}.png" for i in range(3)]
    assert (out / "skipped.jsonl").read_text() == ""
    assert _RecordingHfApi.pushes == ["me/x", "me/x"]

    write_image(root / "train/real/r3.png", face)  # a transient error (EIO): exit 1, no push
    write_image(root / "train/real/r4.png", face)
    refused.add("r4.png")

    def eio_on_r3(fp, *a, **kw):
        if str(fp).endswith("r3.png"):
            raise _eio(fp)
        return open_(fp, *a, **kw)

    monkeypatch.setattr(Image, "open", eio_on_r3)
    r = ingest(*args)
    assert r.exit_code == 1, r.output
    assert "1 file(s) could not be read (I/O errors, e.g. train/real/r3.png: Input/output error (EIO))" in r.output
    assert "1 file(s) could not be read for lack of permission (e.g. train/real/r4.png" in " ".join(r.output.split())
    assert _RecordingHfApi.pushes == ["me/x", "me/x"]


def test_a_video_or_frame_folder_without_read_permission_is_a_permission_skip(tmp_path, face, monkeypatch):
    """review26 M1 for videos (OpenCV names no errno: the check read gets EPERM) and frame folders (one frame
    refused skips the folder, which the rerun redoes whole): "permission denied", exit 0."""
    from test_ingest_run import write_video

    from scf.ingest import worker

    root = tmp_path / "vids"
    write_video(root / "train/replay/v1.avi", face, n=8)
    write_video(root / "train/replay/v2.avi", face, n=8)
    _video_unreadable(monkeypatch, worker, "v1.avi",
                      lambda path: PermissionError(errno.EPERM, "Operation not permitted", str(path)))
    out = tmp_path / "o"
    args = ["--source", "image-folder", "--root", str(root), "--out", str(out), "--frames", "2"]
    r = ingest(*args)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert "1 file(s) could not be read for lack of permission (e.g. train/replay/v1.avi: Operation not " \
           "permitted (EPERM))" in " ".join(r.output.split())
    assert [x["path"] for x in rows(out)] == ["train/replay/v2.avi#2", "train/replay/v2.avi#6"]
    monkeypatch.undo()
    r = ingest(*args)
    assert r.exit_code == 0, r.output
    assert sorted(x["path"] for x in rows(out)) == ["train/replay/v1.avi#2", "train/replay/v1.avi#6",
                                                     "train/replay/v2.avi#2", "train/replay/v2.avi#6"]

    from PIL import Image

    from scf.ingest.base import Item, Meta

    frames = tmp_path / "frames"
    for i in range(4):
        write_image(frames / f"clip/{i:03d}.png", face)
    real_image_open = Image.open

    def refused_frame(fp, *a, **kw):
        if str(fp).endswith(f"{target:03d}.png"):
            raise _denied(fp)
        return real_image_open(fp, *a, **kw)

    target = worker.video.equidistant_frame_indices(4, 2)[-1]  # a frame the sampling reads
    monkeypatch.setattr(Image, "open", refused_frame)
    item = Item("clip", "frames", Meta(label=1, attack_type="live"), "train", "clip",
                frames=tuple(f"clip/{i:03d}.png" for i in range(4)))
    outcome = worker.process(item, str(frames), "s", worker.WorkSettings(frames="2", detect=False))
    assert outcome.rows == [] and outcome.skips == [("clip", "permission denied", "Permission denied (EACCES)")]


def test_a_full_disk_in_ingest_is_one_line_and_the_rerun_finishes(tmp_path, face, monkeypatch):
    """M5: pyarrow's ENOSPC names no file; the line names the folder, says the shards are kept and what to do,
    and leaves no temporary; the rerun after space is freed writes every row once."""
    import datasets

    root = tmp_path / "imgs"
    for i in range(4):
        write_image(root / f"train/real/r{i}.png", face)
    real_write = datasets.Dataset.to_parquet
    calls = []

    def full_after_two(self, where, *a, **kw):
        calls.append(1)
        if len(calls) > 2:
            with open(where, "wb") as f:
                f.write(b"PAR1 half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, where, *a, **kw)

    monkeypatch.setattr(datasets.Dataset, "to_parquet", full_after_two)
    out = tmp_path / "o"
    args = ["--source", "image-folder", "--root", str(root), "--out", str(out), "--shard-size", "1"]
    r = ingest(*args)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.splitlines()[-1] == (f"Error: cannot write to {out} (No space left on device): the finished "
                                         "shards are kept; free space (or raise the quota) and rerun the same "
                                         "command to resume")
    assert len(rows(out)) == 2
    assert not [p for p in (out / "data").iterdir() if p.name.endswith(".tmp")]  # the half shard is removed
    monkeypatch.undo()
    r = ingest(*args)
    assert r.exit_code == 0, r.output
    assert [x["path"] for x in rows(out)] == [f"train/real/r{i}.png" for i in range(4)]
    assert not [p for p in (out / "data").iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_while_staging_the_hub_copy_points_at_the_folder_not_the_half_copy(tmp_path, face, monkeypatch):
    """M3: the upload copy of --push-to-hub cannot be written (a full disk): no half copy is left, and the line
    says so and suggests `hf upload` of the dataset folder itself (not of a copy without data/)."""
    import huggingface_hub
    from ingest_cli import OfflineHfApi

    import scf.hub

    root = tmp_path / "imgs"
    for i in range(2):
        write_image(root / f"train/real/r{i}.png", face)
    out = tmp_path / "bench"

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def full_copy(src, dst):
        with open(dst, "wb") as f:
            f.write(b"PAR1")
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(huggingface_hub, "HfApi", OfflineHfApi)
    monkeypatch.setattr(scf.hub.os, "link", no_link)
    monkeypatch.setattr(scf.hub.shutil, "copy2", full_copy)
    r = ingest("--source", "image-folder", "--root", str(root), "--out", str(out), "--push-to-hub", "someone/x")
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    stage = tmp_path / ".bench.hub-upload"
    assert r.output.strip().splitlines()[-1] == (
        f"Error: cannot write the upload copy {stage} (No space left on device): nothing was uploaded and the partial "
        f"copy is removed; free space beside the folder first; the dataset is in {out}: rerun the same command to "
        f"retry (nothing is ingested again), or hf upload --repo-type dataset --private someone/x {out} (its text "
        "files may name local paths)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench", "imgs"]  # no .bench.hub-upload[.tmp]
    assert len(rows(out)) == 2


def _three_row_bench(folder) -> None:
    """A 3-row benchmark dataset folder (4x4 black images)."""
    import numpy as np
    from PIL import Image

    from scf import schema
    from scf.shards import ShardWriter

    img = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    with ShardWriter(folder, schema.benchmark_features(), shard_size=100) as w:
        for i in range(3):
            w.add({"label": 1, "attack_type": "live", "attack_detail": "", "source": "s", "subject_id": "1",
                   "video_id": f"v{i}", "frame_index": 0, "split": "train", "path": f"p{i}", "image": img}, "train")


def _full_datasets_cache(monkeypatch, cache) -> None:
    """The `datasets` cache is ``cache`` and every Arrow write into it fails with ENOSPC (a nameless one)."""
    import datasets
    import datasets.arrow_writer

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)

    def full(self, *a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(datasets.arrow_writer.ArrowWriter, "write_table", full)
    monkeypatch.setattr(datasets.arrow_writer.ArrowWriter, "write_batch", full)


def test_a_full_datasets_cache_is_named_as_such_not_as_shards_that_disagree(tmp_path, monkeypatch):
    """M2: the Arrow copy `load_table` makes in the datasets cache hits ENOSPC (a home quota): the line names
    the cache folder, the cause and the size needed, and suggests HF_DATASETS_CACHE; nothing about the shards.
    scf caption, ifas-train and ifas-eval print this line (SchemaError)."""
    import datasets
    import pytest

    from scf import schema

    ds, cache = tmp_path / "ds", tmp_path / "cache"
    _three_row_bench(ds)
    _full_datasets_cache(monkeypatch, cache)
    with pytest.raises(schema.SchemaError) as err:
        schema.load_table(str(ds))
    assert str(err.value) == (
        f"cannot write the datasets cache copy of {ds} into {cache} (No space left on device); it needs about 1 MB "
        "(the size of its shards) there: free space there, or set HF_DATASETS_CACHE to a folder on a larger disk, "
        "then rerun the same command (docs/ingest.md#disk-space)")
    monkeypatch.undo()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    assert len(schema.load_table(str(ds))["train"]) == 3  # space freed: the same call loads


def test_scf_caption_with_a_full_datasets_cache_names_the_cache_not_out(tmp_path, monkeypatch):
    """review26 M2: through the command, a full datasets cache (a nameless ENOSPC while `load_table` writes its
    Arrow copy) prints load_table's line naming the cache and HF_DATASETS_CACHE, not "cannot write to OUT"
    (--out is often on another disk: the user would free space in the wrong place)."""
    from click.testing import CliRunner

    from scf.cli import main

    cache = tmp_path / "cache"
    _three_row_bench(tmp_path / "bench")
    _full_datasets_cache(monkeypatch, cache)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["caption", "--preset", "tiny", "--dataset", str(tmp_path / "bench"), "--out",
                                  str(out), "--no-progress"])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: cannot write the datasets cache copy of {tmp_path / 'bench'} into {cache} "
                           "(No space left on device); it needs about "), last
    assert "set HF_DATASETS_CACHE to a folder on a larger disk" in last and str(out) not in last


def test_a_full_disk_while_saving_a_c_s_checkpoint_is_one_line_and_leaves_no_partial_checkpoint(tmp_path,
                                                                                               monkeypatch):
    """M1: safetensors raises SafetensorError (not an OSError) on a full disk. The C_S checkpoint being written
    is removed, the older one is kept, and scf caption's line names --out and says rerunning resumes."""
    import pytest
    import safetensors.torch
    from PIL import Image
    from safetensors import SafetensorError

    from scf.captioning.finetune import FinetuneConfig, finetune_captioner
    from scf.cli import _caption_write_error
    from scf.presets import build_tiny_captioner

    images = [Image.new("RGB", (32, 32), (i * 40, 90, 120)) for i in range(4)]
    captions = ["a man holding a printed paper", "a face on a phone screen", "a paper mask", "a monitor"]
    config = FinetuneConfig(learning_rate=1e-3, warmup_steps=0, epochs=2, batch_size=2, checkpoint_every=2)
    real_save = safetensors.torch.save_file
    saves = []

    def full_on_second(tensors, filename, metadata=None):
        saves.append(filename)
        if "step-00000004" in str(filename):  # the second checkpoint does not fit
            with open(filename, "wb") as f:
                f.write(b"\0" * 10)
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real_save(tensors, filename, metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", full_on_second)
    model, processor = build_tiny_captioner(seed=0)
    out = tmp_path / "out"
    with pytest.raises(SafetensorError) as err:
        finetune_captioner(model, processor, lambda idx: [images[i] for i in idx], captions, config,
                           out / "finetune", show_progress=False)
    checkpoints = out / "finetune" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000002"]  # no .tmp-step-00000004
    assert _caption_write_error(err.value, out) == (
        f"cannot write to {out} (No space left on device): the captions finished so far (and C_S's checkpoints) "
        "are kept; free space (or raise the quota) and rerun the same command to resume (nothing finished is "
        "redone)")
    monkeypatch.undo()  # space freed: the same fine-tuning resumes from step 2 and finishes
    model, processor = build_tiny_captioner(seed=0)
    record = finetune_captioner(model, processor, lambda idx: [images[i] for i in idx], captions, config,
                                out / "finetune", show_progress=False)
    assert record["steps"] == 4


def test_a_full_disk_while_writing_the_caption_corpus_is_one_line_and_removes_the_partial_copy(tmp_path,
                                                                                             monkeypatch):
    """M5 (scf caption) and L3: the corpus shards hit ENOSPC; the line names --out and says the captions are
    kept; corpus.tmp is removed; the rerun captions nothing again and writes the corpus."""
    import datasets
    from click.testing import CliRunner
    from test_caption_pipeline import toy_dataset

    from scf.cli import main

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    toy_dataset(n=1).save_to_disk(str(tmp_path / "bench"))
    out = tmp_path / "out"
    args = ["caption", "--preset", "tiny", "--dataset", str(tmp_path / "bench"), "--out", str(out),
            "--max-new-tokens", "3", "--min-new-tokens", "1", "--no-progress", "--if-empty", "general"]
    real_write = datasets.Dataset.to_parquet

    def full(self, where, *a, **kw):
        if "corpus" in str(where):
            with open(where, "wb") as f:
                f.write(b"PAR1")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, where, *a, **kw)

    monkeypatch.setattr(datasets.Dataset, "to_parquet", full)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.strip().splitlines()[-1] == (
        f"Error: cannot write to {out} (No space left on device): the captions finished so far (and C_S's "
        "checkpoints) are kept; free space (or raise the quota) and rerun the same command to resume (nothing "
        "finished is redone)")
    assert not (out / "corpus.tmp").exists() and not (out / "corpus").exists()
    monkeypatch.setattr(datasets.Dataset, "to_parquet", real_write)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "all 6 images already captioned" in r.output
    assert (out / "corpus" / "README.md").is_file()
