"""`ifas-train` end to end on the tiny preset: run folder contents, final/ loading, push mock, user errors,
and a two-process (gloo) run through torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _train_corpus import build_corpus
from click.testing import CliRunner


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus") / "vqa", max_rows=16)


def _invoke(*args):
    from ifas_model.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_is_fast_and_lists_the_switches():
    proc = subprocess.run([sys.executable, "-c", "import sys, ifas_model.cli; "
                           "print('torch' in sys.modules, 'transformers' in sys.modules)"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["False", "False"]  # --help imports no heavy library
    result = _invoke("--help")
    for flag in ("--llm", "--loss", "--alpha", "--answers", "--no-gac", "--resume", "--push-to-hub", "--config"):
        assert flag in result.output


def test_cli_end_to_end_writes_the_run_folder_and_a_loadable_final_model(corpus, tmp_path, monkeypatch):
    import huggingface_hub
    import torch

    pushed = {}

    def fake_create_repo(self, repo_id, **kw):
        pushed["repo"] = (repo_id, kw.get("private"))

    def fake_upload_folder(self, *, repo_id, folder_path, **kw):
        pushed["files"] = sorted(os.listdir(folder_path))
        return type("Info", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fake_upload_folder)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("batch_size: 4\nlearning_rate: 0.002\n")
    out = tmp_path / "run"
    result = _invoke("--dataset", str(corpus), "--preset", "tiny", "--config", str(cfg), "--output", str(out),
                     "--max-steps", "4", "--save-every", "2", "--eval-every", "2", "--llm", "lora",
                     "--alpha", "0.6", "--push-to-hub", "org/ifas-tiny")
    assert result.exit_code == 0, result.output
    assert "effective batch" in result.output and "trainable parameters" in result.output
    saved = (out / "config.yaml").read_text()
    assert "learning_rate: 0.002" in saved and "alpha: 0.6" in saved and "batch_size: 4" in saved
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["split"] == "train"] == [4]  # tiny logs every 5 steps, and the last
    evals = [r for r in lines if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4] and all("auc" in r and "hter" in r for r in evals)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["hub_commit"].endswith("/commit/1")
    assert pushed["repo"] == ("org/ifas-tiny", True) and "README.md" in pushed["files"]
    card = (out / "final" / "README.md").read_text()
    assert "## Intended use" in card and "## Limitations" in card and "AUC" in card and "lora" in card
    assert "LoRA adapters (rank" in card and "were trained and merged into the LLM weights" in card

    from ifas_model.modeling import IFASForConditionalGeneration
    from ifas_model.processing import IFASProcessor

    model = IFASForConditionalGeneration.from_pretrained(out / "final")
    processor = IFASProcessor.from_pretrained(out / "final")
    assert not any("lora" in n for n, _ in model.named_parameters())  # merged
    assert model.config.lopsided_alpha == 0.6 and model.config.llm_training == "lora"
    from PIL import Image

    batch = processor([Image.new("RGB", (224, 224))], None, None)
    score = model.score(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    assert score.shape == (1,) and 0.0 <= float(score) <= 1.0 and torch.isfinite(score).all()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--dataset", "/no/such/corpus"], "dataset not found: /no/such/corpus"),
        (["--llm", "lora", "--config", "/no/such.yaml"], "config file not found"),
        (["--alpha", "2"], "'alpha'"),
    ],
)
def test_user_errors_are_one_line_and_non_zero(corpus, tmp_path, args, needle):
    from ifas_model.cli import main

    base = ["--dataset", str(corpus), "--preset", "tiny", "--output", str(tmp_path / "run")]
    result = CliRunner().invoke(main, base + args)
    assert result.exit_code != 0
    assert needle in result.output and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output


def test_an_unknown_preset_is_a_usage_error_listing_the_presets(corpus, tmp_path):
    from ifas_model.cli import main

    result = CliRunner().invoke(main, ["--dataset", str(corpus), "--preset", "huge", "--output", str(tmp_path / "r")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Invalid value for '--preset': 'huge' is not one of 'default', 'tiny'." in result.output
    assert not (tmp_path / "r").exists()


def test_schema_failure_via_cli_names_file_column_row(corpus, tmp_path):
    import datasets

    from ifas_model.cli import main

    ds = datasets.load_from_disk(str(corpus))
    rows = ds["train"].cast_column("image", datasets.Image(decode=False)).to_list()
    rows[3]["attack_type"] = "hologram"
    bad = tmp_path / "bad"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows, features=ds["train"].features)}).save_to_disk(
        str(bad))
    result = CliRunner().invoke(main, ["--dataset", str(bad), "--preset", "tiny", "--output", str(tmp_path / "r")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert str(bad) in result.output and "column 'attack_type'" in result.output and "row 3" in result.output


@pytest.mark.slow
def test_two_processes_with_gloo_train_in_step(corpus, tmp_path):
    """torchrun with 2 CPU processes: both ranks run, rank 0 writes, the saved weights are the DDP average."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "ifas_model.cli", "--dataset", str(corpus), "--preset", "tiny", "--output", str(out),
           "--batch-size", "2", "--max-steps", "3", "--save-every", "2", "--eval-split", "test", "--llm", "full"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    output = " ".join((proc.stdout + proc.stderr).split())
    # rank 1 logs warnings only (review16 L4), and DDP does not search for unused parameters (none are)
    assert output.count("built model preset 'tiny'") == 1 and "[rank 1]" not in output
    assert "find_unused_parameters" not in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["effective_batch"] == 4  # 2 per process x 2 processes
    state = json.loads((out / "checkpoints" / "step-00000002" / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    assert sorted(p.name for p in (out / "checkpoints" / "step-00000002").glob("rng-rank*.safetensors")) == [
        "rng-rank0.safetensors", "rng-rank1.safetensors"]
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "eval"]
    assert len(evals) == 1 and evals[0]["n_rows"] == 16  # both shards gathered, padding removed
    assert (out / "final" / "model.safetensors").is_file()


def test_global_batch_size_sets_micro_batch_and_accumulation(corpus, tmp_path):
    import yaml

    out = tmp_path / "run"
    result = _invoke("--dataset", str(corpus), "--preset", "tiny", "--output", str(out), "--max-steps", "2",
                     "--eval-split", "none", "--global-batch-size", "8", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert "8 (= 4 x 2 accumulation x 1 processes)" in " ".join(result.output.split())
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["global_batch_size"], saved["batch_size"], saved["grad_accum"]) == (8, 4, 2)
    # rerunning the same command finds the same resolved settings: the run is finished, not refused
    again = _invoke("--dataset", str(corpus), "--preset", "tiny", "--output", str(out), "--max-steps", "2",
                    "--eval-split", "none", "--global-batch-size", "8", "--batch-size", "4")
    assert again.exit_code == 0 and "already finished" in again.output
    bad = _invoke("--dataset", str(corpus), "--preset", "tiny", "--output", str(tmp_path / "r2"),
                  "--global-batch-size", "8", "--grad-accum", "2")
    assert bad.exit_code == 1 and "give grad_accum or global_batch_size, not both" in bad.output


def test_stop_after_steps_says_where_it_stopped_and_the_same_command_continues(corpus, tmp_path):
    """review18 L3: --stop-after-steps ended with the progress bar only; it now says so in one line."""
    out = tmp_path / "run"
    args = ("--dataset", str(corpus), "--preset", "tiny", "--output", str(out), "--max-steps", "4",
            "--save-every", "0", "--eval-split", "none", "--llm", "lora", "--stop-after-steps", "2")
    first = _invoke(*args)
    assert first.exit_code == 0, first.output
    output = " ".join(first.output.split())
    assert (f"stopped at step 2 of 4 by --stop-after-steps, checkpoint {out / 'checkpoints' / 'step-00000002'}; "
            "rerun the same command to continue from there") in output
    assert first.output.rstrip().splitlines()[-1].startswith("stopped at step 2 of 4")  # after the bar
    assert "done:" not in output and not (out / "final").exists()
    second = _invoke(*args)  # the very same command resumes and finishes
    assert second.exit_code == 0, second.output
    output = " ".join(second.output.split())
    assert "resumed from" in output and "done: 4 steps" in output and "stopped at" not in output
