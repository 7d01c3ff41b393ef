"""A full disk (or quota, read-only or failing disk) while ifas-train writes: one line naming what could not be
written, saying what is kept and that rerunning the same command resumes; nothing half-written is left to look
like a checkpoint or a model; the rerun after space is freed finishes (review25 M1, M4, M5).

The failures are injected where the real ones come from: safetensors' own ``SafetensorError`` (not an OSError)
with the message a full disk gives, after half the file is written, and Python's nameless ``OSError(ENOSPC)``
from a write. (The reviewer's real-tmpfs runs are in docs/training.md#disk-space.)
"""

from __future__ import annotations

import errno
import json

import pytest
from _train_corpus import build_corpus
from _train_corpus import error_line as _error_line
from _train_corpus import invoke_train as _invoke
from _train_corpus import tiny_run_args as _args

ENOSPC_SAFETENSORS = "Error while serializing: I/O error: No space left on device (os error 28)"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus") / "vqa", splits=("train",), max_rows=16)


def _resumed(output: str) -> bool:
    """Whether the banner's "resumed from" row names a checkpoint ("-" on a fresh start; long paths are cut)."""
    rows = [line.split("resumed from", 1)[1].strip() for line in output.splitlines() if "resumed from" in line]
    return any(row.startswith("/") for row in rows) and "-" not in rows


def _full_disk_when(monkeypatch, match: str):
    """Make safetensors writes of files whose path contains ``match`` write half the file and raise the
    ``SafetensorError`` of a full disk; both the names scf/ifas-model call and transformers' own import."""
    import safetensors.torch
    import transformers.modeling_utils
    from safetensors import SafetensorError

    real = safetensors.torch.save_file

    def save_file(tensors, filename, metadata=None):
        real(tensors, filename, metadata)
        if match in str(filename):
            with open(filename, "r+b") as f:
                f.truncate(f.seek(0, 2) // 2)
            raise SafetensorError(ENOSPC_SAFETENSORS)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", save_file)


def test_a_full_disk_in_a_checkpoint_is_one_line_keeps_the_older_one_and_the_rerun_resumes(corpus, tmp_path,
                                                                                            monkeypatch):
    out = tmp_path / "run"
    _full_disk_when(monkeypatch, "step-00000003.tmp/optimizer")
    line = _error_line(_invoke(*_args(corpus, out)))
    ckpts = out / "checkpoints"
    assert line.startswith(f"Error: cannot write {ckpts / 'step-00000003.tmp'} (No space left on device): the "
                           f"finished checkpoints are kept (newest: {ckpts / 'step-00000002'}): free space (a "
                           "checkpoint of this run takes about "), line
    assert line.endswith("and rerun the same command: it resumes from there"), line
    # the partial folder is removed (its space is what the rerun needs); the finished checkpoints are kept
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-00000001", "step-00000002"]
    monkeypatch.undo()
    again = _invoke(*_args(corpus, out))
    assert again.exit_code == 0, again.output
    assert _resumed(again.output)
    assert (out / "final" / "model.safetensors").is_file() and (out / "summary.json").is_file()


def test_a_full_disk_while_writing_final_leaves_no_final_and_the_rerun_writes_only_final(corpus, tmp_path,
                                                                                        monkeypatch):
    from ifas_model import IFASForConditionalGeneration

    out = tmp_path / "run"
    _full_disk_when(monkeypatch, "final.tmp")
    line = _error_line(_invoke(*_args(corpus, out)))
    assert line.startswith(f"Error: cannot write {out / 'final.tmp'} (No space left on device): training is done "
                           f"and its last checkpoint {out / 'checkpoints' / 'step-00000004'} is kept: free space "
                           "(final/ takes about "), line
    assert line.endswith("rerun the same command: it writes final/ only, nothing is trained again"), line
    # nothing that looks like a model (review25 M4: a final/ with a cut-short model.safetensors), no summary
    assert not (out / "final").exists() and not (out / "final.tmp").exists()
    assert not (out / "summary.json").exists()
    monkeypatch.undo()
    again = _invoke(*_args(corpus, out))
    assert again.exit_code == 0, again.output
    assert _resumed(again.output)
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4], steps  # trained once; no final evaluation (eval split none)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "checkpoints", "config.yaml", "corpus.json", "final", "metrics.jsonl", "summary.json"]
    assert (out / "final" / "README.md").is_file()  # the model card goes with the model
    IFASForConditionalGeneration.from_pretrained(out / "final")
    finished = _invoke(*_args(corpus, out))
    assert finished.exit_code == 0 and "already finished" in finished.output, finished.output


def test_a_nameless_enospc_from_a_metrics_write_names_the_file_and_the_kept_checkpoint(corpus, tmp_path,
                                                                                      monkeypatch):
    import pathlib

    out = tmp_path / "run"
    real_open, seen = pathlib.Path.open, []

    def open_(self, mode="r", *args, **kwargs):
        if self.name == "metrics.jsonl" and "a" in mode:
            seen.append(1)
            if len(seen) == 3:  # the line of step 3, after checkpoint step-2
                raise OSError(errno.ENOSPC, "No space left on device")  # what Python's write raises: no file
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", open_)
    line = _error_line(_invoke(*_args(corpus, out)))
    assert line.startswith(f"Error: cannot write {out / 'metrics.jsonl'} (No space left on device): the finished "
                           f"checkpoints are kept (newest: {out / 'checkpoints' / 'step-00000002'}): free space"), line
    monkeypatch.undo()
    again = _invoke(*_args(corpus, out))
    assert again.exit_code == 0, again.output
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4], steps


def test_a_cut_short_final_of_an_older_version_is_one_line_to_load_and_the_rerun_writes_it_again(corpus,
                                                                                               tmp_path):
    from ifas_model import IFASForConditionalGeneration
    from ifas_model._loading import WeightsUnreadable

    out = tmp_path / "run"
    assert _invoke(*_args(corpus, out)).exit_code == 0
    weights = out / "final" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # what ff884cd left on a full disk
    with pytest.raises(WeightsUnreadable) as caught:
        IFASForConditionalGeneration.from_pretrained(out / "final")
    assert isinstance(caught.value, OSError) and isinstance(caught.value, ValueError)  # ifas-eval catches either
    message = str(caught.value)
    assert message.startswith(f"checkpoint {weights}: cut short or damaged (") and "\n" not in message
    assert "rerunning the same ifas-train command" in message
    again = _invoke(*_args(corpus, out))  # summary.json says finished, but its final/ is not whole
    assert again.exit_code == 0 and "already finished" not in again.output, again.output
    assert "writing final/ again from the last checkpoint" in " ".join(again.output.split())  # the warning
    IFASForConditionalGeneration.from_pretrained(out / "final")


def test_write_failure_tells_disk_errors_from_others():
    from safetensors import SafetensorError

    from ifas_model.training.checkpoint import write_failure

    assert write_failure(SafetensorError(ENOSPC_SAFETENSORS)) == (errno.ENOSPC, "No space left on device")
    assert write_failure(SafetensorError("Error while serializing: I/O error: Disk quota exceeded (os error "
                                         f"{errno.EDQUOT})"))[0] == errno.EDQUOT
    assert write_failure(OSError(errno.EIO, "Input/output error"))[0] == errno.EIO
    assert write_failure(OSError(errno.EROFS, "Read-only file system", "x"))[0] == errno.EROFS
    # reading a damaged file, a missing file, a bad value: not a disk problem
    assert write_failure(SafetensorError("Error while deserializing header: incomplete metadata")) is None
    assert write_failure(FileNotFoundError(errno.ENOENT, "No such file or directory", "x")) is None
    assert write_failure(ValueError("bad")) is None


def test_write_text_atomic_leaves_the_old_file_and_no_temporary_on_a_full_disk(tmp_path, monkeypatch):
    import pathlib

    from ifas_model.training.checkpoint import write_text_atomic

    path = tmp_path / "summary.json"
    path.write_text("old")

    def write_text(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    with pytest.raises(OSError):
        write_text_atomic(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_a_disk_error_outside_the_named_writes_is_still_one_line_with_the_run_folder(tmp_path):
    from ifas_model.cli import disk_message
    from ifas_model.training.checkpoint import write_failure

    err = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert disk_message(err, write_failure(err), tmp_path) == (
        f"cannot write to {tmp_path} (or a cache folder the run uses) (Disk quota exceeded): no checkpoint was "
        "finished yet: free space and rerun the same command to resume")
    named = OSError(errno.EIO, "Input/output error", str(tmp_path / "metrics.jsonl"))
    assert disk_message(named, write_failure(named), tmp_path).startswith(
        f"cannot write {tmp_path / 'metrics.jsonl'} (Input/output error): no checkpoint was finished yet: make the "
        "disk writable again and rerun")


def test_an_io_error_reading_a_file_outside_the_run_is_not_called_a_write(tmp_path, monkeypatch):
    """review26 L1: an EIO while the base model's shards were read said "cannot write /models/... make the disk
    writable again"; a read outside --output is reported as what it is (an EIO inside it is still a write)."""
    import click
    import pytest

    from ifas_model import cli
    from ifas_model.training import trainer as trainer_module
    from ifas_model.training.config import resolve_config

    config = resolve_config({"dataset": "org/x", "preset": "tiny", "output_dir": str(tmp_path / "run")})
    shard = tmp_path / "models" / "model-00001-of-00002.safetensors"

    def failing(*a, **kw):
        raise OSError(errno.EIO, "Input/output error", str(shard))

    monkeypatch.setattr(trainer_module, "Trainer", failing)
    with pytest.raises(click.ClickException) as caught:
        cli.run(config)
    assert "cannot write" not in caught.value.message and str(shard) in caught.value.message
    assert "Input/output error" in caught.value.message and "\n" not in caught.value.message
    inside = tmp_path / "run" / "metrics.jsonl"
    monkeypatch.setattr(trainer_module, "Trainer",
                        lambda *a, **kw: (_ for _ in ()).throw(OSError(errno.EIO, "Input/output error", str(inside))))
    with pytest.raises(click.ClickException) as caught:
        cli.run(config)
    assert caught.value.message.startswith(f"cannot write {inside} (Input/output error)")
