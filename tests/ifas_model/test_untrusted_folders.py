"""Folders that ask for their own Python code (an ``auto_map``, ``*.py`` files) or hold pickled weights: the
loaders refuse them in one line, nothing of theirs runs or is unpickled, even when stdin answers "y"."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

EVIL = """import pathlib
pathlib.Path({marker!r}).write_text("code from the checkpoint ran\\n")
from transformers import PreTrainedTokenizerFast


class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A saved tiny I-FAS checkpoint (what ifas-train writes to final/)."""
    from ifas_model.presets import build_model

    model, processor = build_model("tiny", seed=0)
    folder = tmp_path_factory.mktemp("ck") / "final"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _with_auto_map(checkpoint, tmp_path, file_name="tokenizer_config.json", code=True):
    """A copy of the checkpoint whose ``file_name`` names ``evil.EvilTokenizer`` (and ships evil.py)."""
    folder = tmp_path / "ck_automap"
    shutil.copytree(checkpoint, folder)
    marker = tmp_path / "PWNED"
    if code:
        (folder / "evil.py").write_text(EVIL.format(marker=str(marker)))
    path = folder / file_name
    content = json.loads(path.read_text()) if path.exists() else {}  # a file the checkpoint may lack
    content["auto_map"] = {"AutoTokenizer": [None, "evil.EvilTokenizer"]}
    if file_name == "tokenizer_config.json":
        content["tokenizer_class"] = "EvilTokenizer"
    path.write_text(json.dumps(content))
    return folder, marker


def test_an_auto_map_checkpoint_is_refused_in_one_line_even_when_stdin_says_yes(checkpoint, tmp_path):
    folder, marker = _with_auto_map(checkpoint, tmp_path)
    script = ("import sys\nfrom ifas_model.processing import IFASProcessor\n"
              "from ifas_model.modeling import IFASForConditionalGeneration\n"
              "for load in (IFASProcessor.from_pretrained, IFASForConditionalGeneration.from_pretrained):\n"
              "    try:\n        load(sys.argv[1])\n        print('LOADED')\n"
              "    except ValueError as err:\n        print(type(err).__name__ + ': ' + str(err))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(folder)], input="y\ny\n", capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()  # evil.py was never imported
    assert "Do you wish to run the custom code" not in proc.stdout + proc.stderr  # transformers never asked
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and "LOADED" not in proc.stdout, proc.stdout
    for line in lines:
        assert line.startswith(f"RemoteCodeRefused: checkpoint '{folder}': tokenizer_config.json has an auto_map")
        assert "Python code shipped with a model is never run" in line
        assert "trust_remote_code=True" not in line


@pytest.mark.parametrize("file_name", ["config.json", "preprocessor_config.json", "tokenizer_config.json",
                                       "generation_config.json", "video_preprocessor_config.json"])
def test_an_auto_map_in_any_config_file_is_refused(checkpoint, tmp_path, file_name):
    from ifas_model._loading import RemoteCodeRefused
    from ifas_model.processing import IFASProcessor

    folder, marker = _with_auto_map(checkpoint, tmp_path, file_name, code=False)
    with pytest.raises(RemoteCodeRefused, match=f"^checkpoint '{folder}': {file_name} has an auto_map"):
        IFASProcessor.from_pretrained(folder)
    assert not marker.exists()


def test_a_checkpoint_shipping_python_files_is_refused(checkpoint, tmp_path):
    from ifas_model._loading import RemoteCodeRefused
    from ifas_model.modeling import IFASForConditionalGeneration

    folder = tmp_path / "ck"
    shutil.copytree(checkpoint, folder)
    (folder / "modeling_ifas.py").write_text("raise SystemExit('ran')\n")
    with pytest.raises(RemoteCodeRefused, match=r"ships Python code \(modeling_ifas.py\); Python code shipped"):
        IFASForConditionalGeneration.from_pretrained(folder)


def test_a_hub_repository_asking_for_its_code_gets_the_same_refusal_not_transformers_advice(
        checkpoint, tmp_path, monkeypatch):
    """A Hub id is not on disk to be checked first: transformers, told trust_remote_code=False, refuses without
    asking, and its advice to pass trust_remote_code=True is replaced by ours."""
    import ifas_model._loading as loading
    from ifas_model.processing import IFASProcessor

    folder, marker = _with_auto_map(checkpoint, tmp_path)
    monkeypatch.setattr(loading, "refuse_remote_code", lambda name, what: None)  # as for a Hub id
    with pytest.raises(loading.RemoteCodeRefused) as info:
        IFASProcessor.from_pretrained(folder)
    assert str(info.value) == (f"processor '{folder}': asks for Python code of its own (an auto_map); Python code "
                               "shipped with a model is never run by this toolkit")
    assert not marker.exists()
    with pytest.raises(ValueError, match="^trust_remote_code=True is not accepted"):
        IFASProcessor.from_pretrained(checkpoint, trust_remote_code=True)


def test_note_hub_weights_names_a_pickle_taken_from_the_hub_cache(tmp_path, monkeypatch, caplog):
    """For a Hub part, transformers takes pytorch_model.bin when the repository has no safetensors: said in a
    warning (read from the local cache, no network)."""
    from huggingface_hub import constants

    from ifas_model._loading import note_hub_weights

    def snapshot(repo, *files):
        root = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text("abc123")
        for name in files:
            (root / "snapshots" / "abc123").mkdir(parents=True, exist_ok=True)
            (root / "snapshots" / "abc123" / name).write_bytes(b"x")

    snapshot("org/bin-only", "config.json", "pytorch_model.bin")
    snapshot("org/safe", "config.json", "model.safetensors")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with caplog.at_level("WARNING", logger="ifas_model._loading"):
        assert note_hub_weights("org/safe", "language model") is None
        assert not caplog.records
        assert note_hub_weights("org/bin-only", "language model") == "pytorch_model.bin"
    assert "language model 'org/bin-only': the Hub repository has no safetensors weights; its " \
           "pytorch_model.bin (a pickle) was loaded with torch's weights_only unpickler" in caplog.text
