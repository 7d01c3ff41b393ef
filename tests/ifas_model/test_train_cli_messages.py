"""What a user of `ifas-train` sees: one-line errors that name the file, split, sources or setting, refusals
before any model is built, the evaluated set named in the log, a finished run reported as finished."""

from __future__ import annotations

import json
import shutil

import pytest
from _train_corpus import build_corpus
from _train_corpus import invoke_train as _invoke


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus") / "vqa", max_rows=16)


@pytest.fixture
def no_model(monkeypatch):
    """Make building a model fail loudly: a test using this proves a refusal comes before the model."""
    import ifas_model.training.trainer as trainer

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the refusal")

    monkeypatch.setattr(trainer, "build_for_training", refuse)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _one_line_error(result, needle):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output and "ValueError" not in result.output and "TypeError" not in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("learning_rate: abc\n", "tc5.yaml: learning_rate: expected a number, got 'abc'"),
        ("batch_size: [1]\n", "tc5.yaml: batch_size: expected an integer, got [1]"),
        ("name: [unclosed\n", "tc5.yaml: not valid YAML"),
        ("learning_rat: 1e-4\n", "tc5.yaml: unknown setting 'learning_rat'"),
    ],
)
def test_bad_config_file_is_one_line_naming_file_and_field(corpus, tmp_path, no_model, text, needle):
    cfg = tmp_path / "tc5.yaml"
    cfg.write_text(text)
    _one_line_error(_invoke("--dataset", corpus, "--preset", "tiny", "--config", cfg, "--out", tmp_path / "r"),
                    needle)


def test_errors_carry_no_exception_class_prefix(corpus, tmp_path):
    line = _one_line_error(_invoke("--dataset", corpus, "--preset", "tiny", "--out", tmp_path / "r",
                                   "--sources", "sample-domain-z"), "source(s) 'sample-domain-z' not in the corpus")
    assert line.startswith("Error: source(s)")


def test_a_missing_model_folder_is_named(corpus, tmp_path):
    _one_line_error(_invoke("--dataset", corpus, "--out", tmp_path / "r", "--vision-model", "/nonexistent/clip"),
                    "vision model folder not found: /nonexistent/clip")


def test_a_benchmark_dataset_says_to_caption_it_first(tmp_path, no_model):
    from scf.sample import build_sample

    build_sample(0).save_to_disk(str(tmp_path / "bench"))
    _one_line_error(_invoke("--dataset", tmp_path / "bench", "--preset", "tiny", "--out", tmp_path / "r"),
                    "looks like a benchmark dataset")


def test_empty_dev_after_sources_falls_back_and_a_named_empty_split_is_refused_early(corpus, tmp_path, monkeypatch):
    """Protocol 2's case: the corpus has a dev split, but none of its rows belong to the training sources."""
    import datasets

    ds = datasets.load_from_disk(str(corpus))
    dev = ds["test"].filter(lambda s: s == "sample-domain-d", input_columns="source")
    devcorp = tmp_path / "devcorp"
    datasets.DatasetDict({**ds, "dev": dev}).save_to_disk(str(devcorp))
    out = tmp_path / "t15"
    result = _invoke("--dataset", devcorp, "--preset", "tiny", "--out", out, "--sources", "sample-domain-b",
                     "--max-steps", "2", "--batch-size", "4", "--eval-every", "1")
    assert result.exit_code == 0, result.output
    n_test = sum(1 for s in ds["test"]["source"] if s == "sample-domain-b")
    name = f"test of sample-domain-b ({n_test} rows)"
    flat = _flat(result.output)
    assert f"evaluation {name}" in flat  # the banner
    assert f"eval step 1 on {name}" in flat and f"eval on {name}:" in flat  # the eval log and the final line
    assert (out / "final" / "config.json").is_file()
    evals = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert [r["eval_set"] for r in evals] == [name, name]

    import ifas_model.training.trainer as trainer

    monkeypatch.setattr(trainer, "build_for_training", lambda *a, **k: pytest.fail("model built before refusal"))
    _one_line_error(_invoke("--dataset", devcorp, "--preset", "tiny", "--out", tmp_path / "t16", "--sources",
                            "sample-domain-b", "--eval-split", "dev"),
                    "evaluation split 'dev' holds no rows for source(s) sample-domain-b")
    assert not (tmp_path / "t16").exists()  # held while checking; nothing written, so the new folder is removed


def test_single_class_evaluation_is_said_in_words_and_metrics_are_rounded(corpus, tmp_path):
    import datasets

    ds = datasets.load_from_disk(str(corpus))
    real = tmp_path / "realtest"
    datasets.DatasetDict({"train": ds["train"], "test": ds["test"].filter(lambda y: y == 1, input_columns="label")}
                         ).save_to_disk(str(real))
    out = tmp_path / "t27"
    result = _invoke("--dataset", real, "--preset", "tiny", "--out", out, "--max-steps", "1", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    flat = _flat(result.output)
    assert "AUC/HTER not computed: the evaluated rows hold only real faces (label 1)" in flat
    assert "AUC None" not in flat and "AUC nan" not in flat and "HTER None" not in flat
    # two classes: AUC and HTER with 4 decimals
    result = _invoke("--dataset", corpus, "--preset", "tiny", "--out", tmp_path / "two", "--max-steps", "1",
                     "--batch-size", "4")
    assert result.exit_code == 0, result.output
    import re

    found = re.search(r"AUC (\d\.\d+) HTER (\d\.\d+)", _flat(result.output))
    assert found and len(found.group(1)) == 6 and len(found.group(2)) == 6, result.output


def test_resume_refusals_come_before_the_model_and_a_moved_corpus_resumes(corpus, tmp_path, monkeypatch):
    out = tmp_path / "r2"
    args = ["--preset", "tiny", "--out", out, "--max-steps", "2", "--batch-size", "4", "--eval-split", "none",
            "--save-every", "1"]
    first = _invoke("--dataset", corpus, *args, "--stop-after-steps", "1")
    assert first.exit_code == 0, first.output
    saved = json.loads((out / "corpus.json").read_text())
    assert saved["dataset"] == str(corpus) and saved["rows"] == {"test": 16, "train": 16}

    import ifas_model.training.trainer as trainer

    real_build = trainer.build_for_training
    monkeypatch.setattr(trainer, "build_for_training", lambda *a, **k: pytest.fail("model built before refusal"))
    _one_line_error(_invoke("--dataset", corpus, *args, "--no-resume"), "already has checkpoints")
    _one_line_error(_invoke("--dataset", corpus, *args, "--seed", "5"), "settings differ from the saved run in seed")
    other = build_corpus(tmp_path / "other", max_rows=12)
    _one_line_error(_invoke("--dataset", other, *args),
                    f"--dataset {other} is not the corpus the run started on ({corpus}; rows per split")

    monkeypatch.setattr(trainer, "build_for_training", real_build)
    moved = tmp_path / "moved" / "vqa"
    shutil.copytree(corpus, moved)
    resumed = _invoke("--dataset", moved, *args)
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "corpus.json").read_text())["dataset"] == str(moved)
    assert f"dataset: {moved}" in (out / "config.yaml").read_text()
    assert json.loads((out / "summary.json").read_text())["steps"] == 2

    # rerunning the finished run says so (and where the model is) instead of "loss nan 0.0 samples/s"
    monkeypatch.setattr(trainer, "build_for_training", lambda *a, **k: pytest.fail("model built for a finished run"))
    metrics = (out / "metrics.jsonl").read_text()
    again = _invoke("--dataset", moved, *args)
    assert again.exit_code == 0, again.output
    flat = _flat(again.output)
    assert "already finished" in flat and f"{out / 'final'}" in flat and "nan" not in flat
    assert (out / "metrics.jsonl").read_text() == metrics


def test_banner_says_why_a_lora_run_trains_at_1e_4_and_shows_the_resolved_alpha(corpus, tmp_path):
    import io

    from rich.console import Console

    from ifas_model.training.config import TrainConfig
    from ifas_model.training.trainer import Trainer

    # no learning rate anywhere (TrainConfig directly, not the tiny preset's): the LoRA rule applies
    config = TrainConfig(dataset=str(corpus), preset="tiny", llm="lora", output_dir=str(tmp_path / "b"),
                         max_steps=1, batch_size=4, num_workers=0, eval_split="none")
    buffer = io.StringIO()
    trainer = Trainer(config, console=Console(file=buffer, width=250))
    trainer.banner(None)
    text = buffer.getvalue()
    assert "0.0001 (the LoRA default for --llm lora (a deviation from the paper's 1e-05" in text
    alpha_row = next(line for line in text.splitlines() if line.split()[:1] == ["alpha"])
    assert alpha_row.split()[1] == "0.7"


def test_a_failed_push_is_one_line_keeps_final_and_summary_and_a_rerun_only_retries_it(corpus, tmp_path,
                                                                                       monkeypatch):
    import huggingface_hub

    class ConnectError(Exception):  # what httpx raises offline: not an OSError, not a ValueError
        pass

    def offline(self, repo_id, **kw):
        raise ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", offline)
    out = tmp_path / "pushed"
    args = ["--dataset", corpus, "--preset", "tiny", "--out", out, "--max-steps", "2", "--batch-size", "4",
            "--eval-split", "none", "--push-to-hub", "org/ifas-x"]
    result = _invoke(*args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and result.output.rstrip().splitlines()[-1] == errors[0], result.output
    assert errors[0].startswith("Error: push to org/ifas-x failed: ConnectError: [Errno -2] Name or service not")
    assert f"the model is saved in {out / 'final'}" in errors[0] and "rerun the same command" in errors[0]
    assert (out / "final" / "config.json").is_file() and (out / "final" / "README.md").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and "hub_commit" not in summary

    # the rerun trains nothing and pushes; a further rerun does not push again
    import ifas_model.training.trainer as trainer

    monkeypatch.setattr(trainer, "build_for_training", lambda *a, **k: pytest.fail("model built for a push retry"))
    pushes = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: None)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, *, repo_id, folder_path, **kw:
                        pushes.append(folder_path) or type("Info", (), {"commit_url": f"https://hub/{repo_id}/c/1"})())
    metrics = (out / "metrics.jsonl").read_text()
    again = _invoke(*args)
    assert again.exit_code == 0 and "already finished" in _flat(again.output), again.output
    assert pushes == [str(out / "final")] and (out / "metrics.jsonl").read_text() == metrics
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hub_repo"] == "org/ifas-x" and summary["hub_commit"] == "https://hub/org/ifas-x/c/1"
    assert "already_finished" not in summary
    assert _invoke(*args).exit_code == 0 and len(pushes) == 1
