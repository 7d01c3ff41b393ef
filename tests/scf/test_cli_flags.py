"""The flags `scf` shares with the ifas-* commands (review 22 M1, L2, L3, L4): --device auto, the dtype
spellings, -v/--verbose, --no-face-detection, help text on every option, skipped.jsonl always written."""

from __future__ import annotations

import json
import logging

import click
import pytest
from click.testing import CliRunner


@pytest.fixture
def restore_logging():
    """-v sets the root logger to DEBUG (and a few libraries to WARNING): undo that after the test."""
    names = ["", "httpx", "urllib3", "filelock", "fsspec", "datasets", "huggingface_hub", "matplotlib", "PIL"]
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    for n, level in levels.items():
        logging.getLogger(n).setLevel(level)


def test_every_scf_option_has_help_text():
    """Review 22 L4: seven `scf caption` options (and two of sample/ingest) showed only a default."""
    from scf.cli import main

    missing = [f"scf {name} {p.opts[0]}" for name, cmd in main.commands.items() for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert missing == []


def test_help_wraps_at_the_width_of_the_ifas_commands():
    """Review 22 L4: `scf --help` wrapped at 80 columns, the ifas-* commands at 110."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "200"}  # a wide terminal: click caps the help at max_content_width
    for command in ([], ["caption"], ["ingest"]):
        out = subprocess.run([sys.executable, "-c", "from scf.cli import main; main(prog_name='scf')", *command, "--help"], env=env, capture_output=True,
                             text=True, check=True).stdout
        assert 80 < max(map(len, out.splitlines())) <= 110, command


def test_caption_device_and_dtype_accept_the_ifas_eval_spellings():
    """Review 22 M1: `--device auto` was refused as "not a torch device", `--dtype bfloat16` as not a choice."""
    from scf.cli import main

    params = {p.name: p for p in main.commands["caption"].params}
    assert params["device"].default == "auto" and params["device"].show_default
    ifas_eval_cli = pytest.importorskip("ifas_eval.cli")
    assert list(params["dtype"].type.choices) == list(ifas_eval_cli.DTYPE_CHOICES)
    text = CliRunner().invoke(main, ["caption", "--help"], terminal_width=200).output
    assert "[default: auto]" in text.split("--device", 1)[1].split("\n  --", 1)[0]
    # a device that is not one: one line, naming auto among the choices
    r = CliRunner().invoke(main, ["caption", "--preset", "tiny", "--out", "unused", "--device", "gpu0"])
    assert r.exit_code == 1 and r.output.strip().splitlines() == [
        "Error: --device gpu0: not a torch device (use auto, cpu, cuda, cuda:N or mps)"]


def test_auto_device_is_cuda_then_mps_then_cpu(monkeypatch):
    """`auto` (and no --device) picks what ifas-eval's auto picks; under torchrun CUDA is cuda:LOCAL_RANK."""
    import torch

    from scf.captioning import captioner
    from scf.captioning.captioner import pick_device, pick_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(captioner, "_mps_available", lambda: False)
    assert pick_device("auto") == pick_device(None) == torch.device("cpu")
    monkeypatch.setattr(captioner, "_mps_available", lambda: True)
    assert pick_device("auto") == pick_device(None) == torch.device("mps")
    assert pick_dtype("auto", torch.device("mps")) == torch.float32  # as ifas-eval: float32 on MPS
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert pick_device("auto") == pick_device(None) == torch.device("cuda", 3)
    assert pick_dtype("bfloat16", torch.device("cpu")) == pick_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert pick_dtype("float16", torch.device("cpu")) == torch.float16
    assert pick_dtype("float32", torch.device("cpu")) == torch.float32


def test_caption_runs_with_device_auto_long_dtype_and_verbose(tmp_path, caplog, restore_logging):
    """The flags copied from ifas-eval run: the record keeps the short dtype (so a resume may spell it either
    way), and -v shows where the captioner was loaded."""
    from scf.cli import main

    out = tmp_path / "cap"
    args = ["caption", "--preset", "tiny", "--out", str(out), "--split", "real", "--splits", "test",
            "--max-new-tokens", "2", "--min-new-tokens", "1", "--no-progress"]
    assert logging.getLogger().level > logging.DEBUG
    r = CliRunner().invoke(main, [*args, "--device", "auto", "--dtype", "float32", "-v"])
    assert r.exit_code == 0, r.output  # the debug line below reaches caplog only because -v set the root level
    assert "loading captioner tiny on cpu in float32 (--device auto, --dtype fp32)" in caplog.text
    assert json.loads((out / "scf_caption_config.json").read_text())["dtype"] == "fp32"
    r = CliRunner().invoke(main, [*args, "--dtype", "fp32"])  # the resume, with the short spelling
    assert r.exit_code == 0, r.output


def test_ingest_no_face_detection_verbose_and_an_empty_skip_log(tmp_path, face, caplog, restore_logging):
    """Review 22 L2: `--no-face-detection` (ifas-predict's spelling) and `-v` were "No such option";
    L3: a run that skips nothing wrote no skipped.jsonl, though docs/ingest.md lists it."""
    from PIL import Image

    from scf.cli import main

    root = tmp_path / "mine"
    (root / "real").mkdir(parents=True)
    (root / "fake").mkdir()
    Image.fromarray(face).save(root / "real/a.png")
    Image.fromarray(face[:, ::-1]).save(root / "fake/b.png")
    out = tmp_path / "o"
    base = ["--source", "image-folder", "--root", str(root), "--out", str(out), "--split", "train", "--no-progress"]
    r = CliRunner().invoke(main, ["-v", "ingest", *base, "--no-face-detection"])
    assert r.exit_code == 0, r.output
    assert logging.getLogger().level == logging.DEBUG
    assert json.loads((out / "ingest_config.json").read_text())["detect"] is False
    assert (out / "skipped.jsonl").read_text() == ""  # written, empty: nothing was skipped
    # the same settings under the other spellings: a resume, not "other settings"
    r = CliRunner().invoke(main, ["ingest", *base, "--no-detect", "-v"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["ingest", *base, "--face-detection"])
    assert r.exit_code == 1 and "other settings" in r.output and "Traceback" not in r.output


def test_list_sources_and_help_say_detection_is_off_with_casia_fas_lists():
    """Review 22 L4: `--list-sources` said `on` for every dataset reader, though CASIA-FAS --list files turn
    detection off by default (`DatasetReader.precropped_for`); OULU-NPU protocol files keep it on."""
    from scf.cli import main

    r = CliRunner().invoke(main, ["ingest", "--list-sources"], terminal_width=200)
    assert r.exit_code == 0, r.output
    cells = {line.split("│")[1].strip(): line.split("│")[3].strip() for line in r.output.splitlines()
             if line.count("│") >= 4 and line.split("│")[1].strip()}
    assert cells["oulu-npu"] == cells["hifimask"] == "on*"
    assert cells["flip-mcio"] == cells["casia-fas-list"] == "off" and cells["csv"] == "on"
    flat = " ".join(r.output.split())
    assert "on*: off when the reader is given CASIA-FAS --list files" in flat
    help_text = " ".join(CliRunner().invoke(main, ["ingest", "--help"]).output.split())
    assert "for a dataset reader given CASIA-FAS --list files" in help_text
