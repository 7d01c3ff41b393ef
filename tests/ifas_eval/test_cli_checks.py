"""Bad input to ifas-eval / ifas-predict / ifas-demo: one line, non-zero exit, cheap checks before heavy work."""

from __future__ import annotations

import json
import time

import pytest
import torch
from click.testing import CliRunner

from ifas_eval.cli import demo, main, predict


def _last(res) -> str:
    return res.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("command", ["eval", "predict", "demo"])
def test_device_errors_are_one_line(command, tiny_ckpt, tmp_path):
    args = {"eval": (main, ["--protocol", "sample", "--checkpoint", f"sample-domain-a={tiny_ckpt}"]),
            "predict": (predict, [str(tmp_path / "x.png"), "--checkpoint", str(tiny_ckpt)]),
            "demo": (demo, ["--checkpoint", str(tiny_ckpt)])}
    cli, base = args[command]
    res = CliRunner().invoke(cli, [*base, "--device", "gpu0"])
    assert res.exit_code == 1 and _last(res) == "Error: --device gpu0: not a device (use auto, cpu, cuda or cuda:N)"
    assert "Traceback" not in res.output
    if not torch.cuda.is_available():
        res = CliRunner().invoke(cli, [*base, "--device", "cuda"])
        assert res.exit_code == 1
        assert _last(res) == "Error: --device cuda: no CUDA GPU is available (use cpu or auto)"
    if not torch.backends.mps.is_available():
        res = CliRunner().invoke(cli, [*base, "--device", "mps"])
        assert res.exit_code == 1 and _last(res) == "Error: --device mps: Apple MPS is not available (use cpu or auto)"
    help_text = " ".join(CliRunner().invoke(cli, ["--help"]).output.split())
    assert "else Apple MPS on an Apple silicon Mac, else cpu), cpu, cuda, cuda:N or mps" in help_text
    assert "float32 on CPU and MPS" in help_text


def test_pick_device():
    from ifas_eval.scoring import pick_device

    assert pick_device("cpu") == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device("auto") == expected
    with pytest.raises(ValueError, match="cuda:99"):
        pick_device("cuda:99")


def test_auto_picks_cuda_then_mps_then_cpu_and_mps_loads_in_float32(monkeypatch):
    from ifas_eval.scoring import default_dtype, pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)  # an Apple-silicon Mac
    assert pick_device("auto") == "mps" and pick_device("mps") == "mps"
    assert default_dtype("mps") == "float32" and default_dtype("cpu") == "float32"
    assert default_dtype("cuda") == "bfloat16" and default_dtype("cuda:1") == "bfloat16"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)  # Linux / Intel Mac without a GPU
    assert pick_device("auto") == "cpu"
    with pytest.raises(ValueError, match="Apple MPS is not available"):
        pick_device("mps")


@pytest.mark.parametrize("command", ["eval", "predict", "demo"])
def test_missing_checkpoint_folder_is_named_before_anything_heavy(command, tmp_path):
    missing = str(tmp_path / "runs" / "nope" / "final")
    cli, args = {"eval": (main, ["--protocol", "sample", "--checkpoint", f"sample-domain-a={missing}"]),
                 "predict": (predict, [str(tmp_path / "x.png"), "--checkpoint", missing]),
                 "demo": (demo, ["--checkpoint", missing])}[command]
    start = time.perf_counter()
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and _last(res) == f"Error: checkpoint folder not found: {missing}"
    # ifas-eval used to build the embedded sample (about 16 s) before it looked at the checkpoint
    assert time.perf_counter() - start < 8


def test_checkpoint_that_is_not_ifas_is_refused_before_the_sample(tmp_path):
    other = tmp_path / "blip"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "blip-2"}))
    res = CliRunner().invoke(main, ["--protocol", "sample", "--checkpoint", f"sample-domain-a={other}"])
    assert res.exit_code == 1
    assert _last(res) == (f"Error: checkpoint {other}: config.json has model_type 'blip-2', not an I-FAS ('ifas') "
                          "checkpoint")
    assert not (tmp_path / "eval-sample").exists()


def test_a_training_resume_state_points_to_final(tmp_path):
    """ifas-train writes <run>/checkpoints/step-N (resume states) and <run>/final (the model); the error for a
    step folder names final/, and no message suggests a checkpoint-N folder ifas-train never writes."""
    step = tmp_path / "run" / "checkpoints" / "step-00000040"
    step.mkdir(parents=True)
    (step / "trainer_state.json").write_text("{}")
    (step / "model.safetensors").write_bytes(b"")
    (tmp_path / "x.png").write_bytes(b"")
    res = CliRunner().invoke(predict, [str(tmp_path / "x.png"), "--checkpoint", str(step)])
    assert res.exit_code == 1
    assert _last(res) == (f"Error: checkpoint {step}: a resume state of ifas-train (trainable weights and optimizer "
                          f"only), not a model: use the run's final/ folder ({tmp_path / 'run' / 'final'})")
    res = CliRunner().invoke(predict, [str(tmp_path / "x.png"), "--checkpoint", str(tmp_path)])
    assert _last(res) == (f"Error: checkpoint {tmp_path}: no config.json: not a checkpoint folder (use <run>/final "
                          "of ifas-train; <run>/checkpoints/step-* are resume states, not models)")


def test_checkpoint_without_protocol_points_own_data_to_a_yaml_protocol():
    res = CliRunner().invoke(main, ["--checkpoint", "x", "--data", "y"])
    assert res.exit_code == 1
    assert _last(res) == ("Error: --checkpoint needs --protocol: a built-in one (see --list-protocols) or, for your "
                          "own data, write a protocol YAML file (docs/evaluation.md, 'Your own protocol') and pass "
                          "--protocol my.yaml")
    res = CliRunner().invoke(main, ["--protocol", "mine", "--checkpoint", "x"])
    assert res.exit_code == 1 and _last(res).endswith("(for your own data, write one: docs/evaluation.md, 'Your own "
                                                      "protocol')")


def test_protocol_help_names_every_builtin_protocol():
    from ifas_eval.protocols import BUILTIN_PROTOCOLS, builtin_protocols

    assert [p.name for p in builtin_protocols()] == list(BUILTIN_PROTOCOLS)
    text = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    packed = text.replace(" ", "")  # click may wrap a name at its hyphen
    for name in BUILTIN_PROTOCOLS:
        assert f"{name}(" in packed, name
    assert "a protocol YAML file naming the training and test sources" in text
    listing = " ".join(CliRunner().invoke(main, ["--list-protocols"]).output.split())
    assert "for your own data, write a protocol YAML file" in listing


def _corrupt_benchmark(path):
    """The embedded sample saved to disk with one sample-domain-a test image replaced by garbage bytes."""
    import datasets

    from scf.sample import build_sample

    sample = build_sample(0)
    raw = {k: v.cast_column("image", datasets.Image(decode=False)) for k, v in sample.items()}
    sources = raw["test"]["source"]
    bad = sources.index("sample-domain-a") + 3
    bad_path = raw["test"][bad]["path"]

    def corrupt(row, i):
        if i == bad:
            row["image"] = {"bytes": b"garbage", "path": None}
        return row

    raw["test"] = raw["test"].map(corrupt, with_indices=True)
    dd = datasets.DatasetDict({k: v.cast_column("image", datasets.Image()) for k, v in raw.items()})
    dd.save_to_disk(str(path))
    return bad, bad_path


def test_corrupt_benchmark_image_is_named_or_skipped(tiny_ckpt, tmp_path):
    bench = tmp_path / "corruptbench"
    bad, bad_path = _corrupt_benchmark(bench)
    base = ["--protocol", "sample", "--setting", "sample-domain-a", "--checkpoint", f"sample-domain-a={tiny_ckpt}",
            "--data", str(bench), "--no-report"]
    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "e1")])
    assert res.exit_code == 1
    assert _last(res) == (f"Error: {bench} [test] row {bad} (path {bad_path}): corrupt image (not a decodable "
                          "image); --skip-corrupt skips and counts such images")
    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "e2"), "--skip-corrupt", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    (r,) = doc["results"]
    assert r["skipped_corrupt"] == 1 and r["n_frames"] == 29
    assert doc["table"]["rows"][0]["skipped_corrupt"] == 1
    md = (tmp_path / "e2" / "results.md").read_text()
    assert "Corrupt images skipped (--skip-corrupt): sample-domain-a 1." in md
    assert "Loading weights" not in res.output  # no transformers tqdm bars between rich lines


def test_dtype_and_dataset_aliases(tiny_ckpt, tmp_path):
    from scf.sample import write_sample

    write_sample(tmp_path / "bench")
    res = CliRunner().invoke(main, ["--protocol", "sample", "--setting", "sample-domain-d", "--checkpoint",
                                    f"sample-domain-d={tiny_ckpt}", "--dataset", str(tmp_path / "bench"),
                                    "--dtype", "fp32", "--out", str(tmp_path / "e"), "--no-report", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["dtype"] == "float32" and doc["data"] == str(tmp_path / "bench")
    for cli in (main, predict, demo):
        text = CliRunner().invoke(cli, ["--help"]).output
        assert "bf16" in text and "bfloat16" in text



def test_dtype_choices_are_scf_captions_and_each_loads_here():
    """One --dtype list for scf caption, ifas-eval, ifas-predict and ifas-demo (scf's), every entry of which
    ifas-eval's loader accepts; and taking it from scf keeps `--help` free of torch/transformers/datasets."""
    import subprocess
    import sys

    from ifas_eval.scoring import DTYPES, canonical_dtype
    from scf.captioning.captioner import DTYPE_CHOICES

    for cli in (main, predict, demo):
        (dtype,) = [p for p in cli.params if p.name == "dtype"]
        assert tuple(dtype.type.choices) == DTYPE_CHOICES
    assert {canonical_dtype(d) for d in DTYPE_CHOICES} == set(DTYPES)
    code = ("import sys, ifas_eval.cli; print(sorted(m for m in ('torch', 'transformers', 'datasets', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

def test_thresholds_share_one_range():
    from ifas_eval.cli import demo as demo_cmd
    from ifas_eval.cli import main as eval_cmd
    from ifas_eval.cli import predict as predict_cmd

    ranges = []
    for cmd in (eval_cmd, predict_cmd, demo_cmd):
        (opt,) = [p for p in cmd.params if p.name == "threshold"]
        ranges.append((opt.type.min, opt.type.max))
    assert ranges == [(0.0, 1.1)] * 3


def test_predict_error_field_has_no_class_name(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    res = CliRunner().invoke(predict, [str(tmp_path / "broken.jpg"), str(tmp_path / "gone.png"), "--preset", "tiny"])
    assert res.exit_code == 1
    errors = [json.loads(line)["error"] for line in res.stdout.splitlines()]
    assert errors == [f"{tmp_path / 'broken.jpg'}: not a readable image or video",
                      f"{tmp_path / 'gone.png'}: no such file or folder"]


def test_help_documents_threshold_meaning_and_setting_checkpoints():
    eval_help = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    assert "--checkpoint sample-domain-a=runs/sample-a/final" in eval_help
    assert "ifas-eval --protocol sample --checkpoint runs/" not in eval_help  # no plain CKPT on leave-one-out
    predict_help = " ".join(CliRunner().invoke(predict, ["--help"]).output.split())
    assert "only with --normalize yes_no" in predict_help
    for field in ('"normalize"', '"face_found": false', '"best_frame"', '"frames"', "ifas_eval.predict.judge"):
        assert field in predict_help, field
    demo_help = " ".join(CliRunner().invoke(demo, ["--help"]).output.split())
    assert "0.0.0.0 exposes the model" in demo_help
