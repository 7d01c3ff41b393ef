"""A run folder damaged or interrupted by a crash (power loss, a full disk, a bad copy, a kill): ifas-train falls
back to the older complete checkpoint with a warning, or says in one line which file is unreadable and what to
do; metrics.jsonl stays free of duplicates and its first line after a resume equals the uninterrupted run's."""

from __future__ import annotations

import json

import pytest
from _train_corpus import build_corpus
from _train_corpus import error_line as _error_line
from _train_corpus import invoke_train as _invoke
from _train_corpus import tiny_run_args as _args


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus") / "vqa", splits=("train",), max_rows=16)


def _half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def stopped(corpus, tmp_path_factory):
    """A run stopped after step 2: checkpoints step-1 and step-2 (ifas-train keeps two)."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    result = _invoke(*_args(corpus, out, "--stop-after-steps", "2"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000001", "step-00000002"]
    return out


def _copy(stopped, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(stopped, out)
    return out


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "rng-rank0.safetensors",
                                  "optimizer.json", "trainer_state.json"])
def test_checkpoint_problem_names_the_truncated_file(stopped, name):
    from ifas_model.training.checkpoint import checkpoint_problem

    ckpt = stopped / "checkpoints" / "step-00000002"
    assert checkpoint_problem(ckpt) is None
    original = (ckpt / name).read_bytes()
    try:
        _half(ckpt / name)
        problem = checkpoint_problem(ckpt)
        assert problem is not None and problem.startswith(name), problem
    finally:
        (ckpt / name).write_bytes(original)


def test_a_truncated_newest_checkpoint_falls_back_to_the_older_one_with_a_warning(corpus, stopped, tmp_path,
                                                                                 caplog):
    import torch
    from safetensors.torch import load_file

    from ifas_model.training.config import resolve_config
    from ifas_model.training.trainer import Trainer

    out = _copy(stopped, tmp_path)
    _half(out / "checkpoints" / "step-00000002" / "model.safetensors")
    settings = {"dataset": str(corpus), "preset": "tiny", "output_dir": str(out), "max_steps": 4, "batch_size": 4,
                "eval_split": "none", "save_every": 1, "log_every": 1}
    with caplog.at_level("WARNING", logger="ifas_model.training.trainer"):
        trainer = Trainer(resolve_config(settings))
        assert trainer.resume_ckpt == out / "checkpoints" / "step-00000001"
        trainer.fit()
    warning = " ".join(caplog.text.split())
    assert f"checkpoint {out / 'checkpoints' / 'step-00000002'} is unreadable (model.safetensors:" in warning
    assert "resuming from the older step-00000001" in warning
    assert json.loads((out / "summary.json").read_text())["steps"] == 4
    # the damaged checkpoint was rewritten when training reached step 2 again, equal to the undamaged run's
    straight = tmp_path / "straight"
    assert _invoke(*_args(corpus, straight)).exit_code == 0
    for step in ("step-00000003", "step-00000004"):
        a = load_file(str(straight / "checkpoints" / step / "model.safetensors"))
        b = load_file(str(out / "checkpoints" / step / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_no_readable_checkpoint_left_is_one_line_naming_the_file(corpus, stopped, tmp_path):
    out = _copy(stopped, tmp_path)
    for step in ("step-00000001", "step-00000002"):
        _half(out / "checkpoints" / step / "optimizer.safetensors")
    line = _error_line(_invoke(*_args(corpus, out)))
    assert line.startswith(f"Error: {out / 'checkpoints' / 'step-00000002'}: unreadable checkpoint "
                           "(optimizer.safetensors: Error while deserializing header"), line
    assert "(and 1 older one(s) too)" in line and f"delete {out / 'checkpoints'} to start the run again" in line


def test_a_torn_corpus_record_is_named_in_one_line_and_deleting_it_resumes(corpus, stopped, tmp_path):
    out = _copy(stopped, tmp_path)
    path = out / "corpus.json"
    path.write_text(path.read_text()[:20])
    line = _error_line(_invoke(*_args(corpus, out)))
    assert line.startswith(f"Error: {path}: not valid JSON (") and "delete it and rerun the same command" in line
    path.unlink()
    assert _invoke(*_args(corpus, out)).exit_code == 0
    assert json.loads(path.read_text())["dataset"] == str(corpus)


def test_a_torn_summary_of_a_finished_run_is_named_and_deleting_it_redoes_only_the_end(corpus, tmp_path):
    out = tmp_path / "done"
    assert _invoke(*_args(corpus, out)).exit_code == 0
    summary = out / "summary.json"
    summary.write_text(summary.read_text()[:30])
    line = _error_line(_invoke(*_args(corpus, out)))
    assert line.startswith(f"Error: {summary}: not valid JSON (") and "nothing is trained again" in line
    summary.unlink()
    again = _invoke(*_args(corpus, out))
    assert again.exit_code == 0, again.output
    assert json.loads(summary.read_text())["steps"] == 4


def test_a_torn_last_metrics_line_does_not_block_the_resume(corpus, stopped, tmp_path, caplog):
    out = _copy(stopped, tmp_path)
    metrics = out / "metrics.jsonl"
    with metrics.open("a") as f:
        f.write('{"step": 3, "ep')  # a kill in mid-write
    result = _invoke(*_args(corpus, out))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in metrics.read_text().splitlines()]  # every line is JSON again
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4]


def _train_and_eval_steps(out):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return ([r["step"] for r in records if r["split"] == "train"], [r["step"] for r in records if r["split"] == "eval"])


def test_no_duplicate_metrics_after_a_kill_before_the_first_checkpoint_or_while_final_was_written(corpus,
                                                                                                 tmp_path):
    import shutil

    # killed after logging step 1, before any checkpoint: the rerun starts afresh and does not append
    out = tmp_path / "fresh"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "epoch": 0, "split": "train", "loss": 9.9}\n')
    args = _args(corpus, out, "--eval-split", "holdout", "--eval-every", "2", "--keep-checkpoints", "4")
    assert _invoke(*args).exit_code == 0
    assert _train_and_eval_steps(out) == ([1, 2, 3, 4], [2, 4])
    assert 9.9 not in [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]

    # killed while final/ was written: the rerun resumes at step 4 and evaluates again, once
    shutil.rmtree(out / "final")
    (out / "summary.json").unlink()
    assert _invoke(*args).exit_code == 0
    assert _train_and_eval_steps(out) == ([1, 2, 3, 4], [2, 4])
    # an evaluation the checkpoint holds (step 2, saved after it) is kept on a resume from step 2
    shutil.rmtree(out / "checkpoints" / "step-00000004")
    shutil.rmtree(out / "checkpoints" / "step-00000003")
    shutil.rmtree(out / "final")
    (out / "summary.json").unlink()
    assert _invoke(*args).exit_code == 0
    assert _train_and_eval_steps(out) == ([1, 2, 3, 4], [2, 4])


def test_the_first_train_line_after_a_resume_averages_the_same_steps_as_an_uninterrupted_run(corpus, tmp_path):
    # --save-every 3 is not a multiple of --log-every 2: the step-4 line covers steps 3 and 4, across the stop
    def losses(out):
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["loss"] for r in records if r["split"] == "train"}

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    more = ["--save-every", "3", "--log-every", "2"]
    assert _invoke(*_args(corpus, straight, *more)).exit_code == 0
    assert _invoke(*_args(corpus, resumed, *more, "--stop-after-steps", "3")).exit_code == 0
    assert _invoke(*_args(corpus, resumed, *more)).exit_code == 0
    assert losses(resumed) == losses(straight) and sorted(losses(straight)) == [2, 4]


def test_a_truncated_config_yaml_is_called_truncated_not_changed_settings(corpus, stopped, tmp_path):
    out = _copy(stopped, tmp_path)
    path = out / "config.yaml"
    text = path.read_text()
    # cut inside the value of the second key, wherever the temporary folder is (its path is the first line's
    # value, so a fixed offset lands in another place for every user name, TMPDIR and pytest-N)
    cut = text.index("\nsources: ") + len("\nsources: ") + 2
    assert text.startswith("dataset: ") and cut < text.index("\ntrain_split:")
    path.write_text(text[:cut])
    line = _error_line(_invoke(*_args(corpus, out)))
    assert line.startswith(f"Error: {path} looks truncated: keys train_split, eval_split, "), line
    assert "more missing" in line
    assert "settings differ" not in line and "delete it and rerun the same command" in line
    path.write_text(text[: text.index("hub_private")])  # cut at a line end: still parses, still refused
    assert "looks truncated: keys hub_private missing" in _error_line(_invoke(*_args(corpus, out)))
    path.unlink()
    assert _invoke(*_args(corpus, out)).exit_code == 0
    assert path.read_text() == text.replace(str(stopped), str(out))  # written again (output_dir: the copy)


def test_saved_config_completeness_is_read_from_its_end_line_not_todays_fields(tmp_path):
    """Review 7 #5: a config.yaml ending with CONFIG_END is complete even when a later version added a field
    after hub_private; one without it (cut short, or written before the line existed) is judged by hub_private."""
    from ifas_model.training.config import CONFIG_END, TrainConfig, write_config
    from ifas_model.training.trainer import ResumeError, read_saved_config

    path = tmp_path / "config.yaml"
    write_config(TrainConfig(dataset="d", output_dir=str(tmp_path)), path)
    text = path.read_text()
    assert text.rstrip().endswith(CONFIG_END) and read_saved_config(path)["dataset"] == "d"
    # a later version's file: a field after hub_private, one removed, still complete
    path.write_text(text.replace(CONFIG_END, "new_setting: 3\n" + CONFIG_END).replace("seed: 0\n", ""))
    assert read_saved_config(path)["new_setting"] == 3
    # a file of an earlier version (no end line) that ends with hub_private: complete
    older = text.replace(CONFIG_END + "\n", "")
    path.write_text(older)
    assert read_saved_config(path)["hub_private"] is True
    # cut short anywhere: no end line, so refused as truncated
    path.write_text(text[: text.index(CONFIG_END) - 3])
    with pytest.raises(ResumeError, match="looks truncated: it ends inside a line; restore it"):
        read_saved_config(path)
