"""What `ifas-train` reads and publishes: local parts only as safetensors, no local path in what --push-to-hub
uploads, the push of a moved run folder takes that folder's own final/, and the software versions are recorded
(summary.json, model card, ``--version``) without blocking a resume after an upgrade."""

from __future__ import annotations

import json
import shutil
from importlib.metadata import version

import pytest
from _train_corpus import build_corpus
from _train_corpus import invoke_train as _invoke


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus") / "vqa", splits=("train",), max_rows=8)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A tiny CLIP vision tower and a tiny OPT with its tokenizer, saved as a user's local parts would be
    (safetensors), and .bin-only copies of both (``torch.save`` state dicts, what older checkpoints hold)."""
    import torch
    from transformers import CLIPVisionModel, OPTForCausalLM

    from ifas_model.presets import build_model

    model, processor = build_model("tiny", seed=0)
    root = tmp_path_factory.mktemp("parts")
    vision, text = CLIPVisionModel(model.config.vision_config), OPTForCausalLM(model.config.text_config)
    for name, part in (("vision", vision), ("text", text)):
        part.save_pretrained(root / name)
        part.config.save_pretrained(root / "bin" / name)
        torch.save(part.state_dict(), root / "bin" / name / "pytorch_model.bin")
    processor.tokenizer.save_pretrained(root / "text")
    processor.tokenizer.save_pretrained(root / "bin" / "text")
    return root


def _args(corpus, out, vision, text, *more):
    return ["--dataset", corpus, "--preset", "default", "--vision-model", vision, "--language-model", text,
            "--out", out, "--llm", "frozen", "--max-steps", "1", "--batch-size", "4", "--eval-split", "none",
            "--num-workers", "0", *more]


def _error_line(result):
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and result.output.rstrip().splitlines()[-1] == errors[0], result.output
    return errors[0]


class _Hub:
    """``HfApi.create_repo`` / ``upload_folder`` replaced: records what would be uploaded, text files read."""

    def __init__(self, monkeypatch):
        import huggingface_hub

        self.uploads: list[tuple[str, str, dict[str, str]]] = []
        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda api, repo_id, **kw: None)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder",
                            lambda api, *, repo_id, folder_path, **kw: self.upload(repo_id, folder_path))

    def upload(self, repo_id, folder_path):
        from pathlib import Path

        texts = {p.name: p.read_text() for p in Path(folder_path).iterdir() if p.suffix != ".safetensors"}
        self.uploads.append((repo_id, folder_path, texts))
        return type("Info", (), {"commit_url": f"https://hub.example/{repo_id}/commit/{len(self.uploads)}"})()


@pytest.fixture(scope="module")
def pushed(corpus, parts, tmp_path_factory):
    """A finished run from local parts, pushed (mocked) to org/ifas-parts: (run folder, what was uploaded)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    with pytest.MonkeyPatch.context() as mp:
        hub = _Hub(mp)
        result = _invoke(*_args(corpus, out, parts / "vision", parts / "text", "--push-to-hub", "org/ifas-parts"))
    assert result.exit_code == 0, result.output
    assert len(hub.uploads) == 1 and hub.uploads[0][:2] == ("org/ifas-parts", str(out / "final"))
    return out, hub.uploads[0][2]


def test_the_pushed_card_and_config_hold_no_local_path(pushed, parts, corpus):
    out, files = pushed
    assert {"README.md", "config.json", "tokenizer_config.json"} <= set(files)
    for name, text in files.items():  # no user name, mount point, dataset or run location goes to the Hub
        for local in (str(parts), str(corpus), str(out), str(out.parent)):
            assert local not in text, (name, local)
    card = files["README.md"]
    assert "- Pretrained parts: `vision` (a local folder), `text` (a local folder)" in card
    assert "- Corpus: `vqa` (a local folder)" in card
    assert "\nvision_model: vision\n" in card and "\noutput_dir: run\n" in card
    assert "Local paths (dataset, vision_model, language_model, output_dir) are shown by their folder names" in card
    assert "base_model:" not in card  # no Hub id to cite
    config = json.loads(files["config.json"])
    assert config["base_models"] == ["vision", "text"]
    assert config["vision_config"]["_name_or_path"] == "vision" and config["text_config"]["_name_or_path"] == "text"
    # the run folder keeps the full paths: a resume and the user need them
    saved = (out / "config.yaml").read_text()
    assert f"vision_model: {parts / 'vision'}\n" in saved and f"output_dir: {out}\n" in saved


def test_summary_and_card_record_the_software_versions(pushed):
    out, files = pushed
    summary = json.loads((out / "summary.json").read_text())
    versions = summary["versions"]
    assert versions["ifas-model"] == version("ifas-model") and versions["torch"] == version("torch")
    assert versions["transformers"] == version("transformers") and versions["peft"] == version("peft")
    assert summary["final"] == "final"  # relative to the run folder, which may move
    card = files["README.md"]
    software = card[card.index("## Software"):card.index("## How to load")]
    assert f"- ifas-model: {version('ifas-model')}\n" in software and f"- torch: {version('torch')}\n" in software
    assert "versions" not in (out / "config.yaml").read_text()  # never compared on resume


def test_version_option():
    result = _invoke("--version")
    assert result.exit_code == 0 and result.output == f"ifas-train (ifas-model) {version('ifas-model')}\n"


def test_pushing_a_moved_finished_run_uploads_its_own_final_folder(pushed, corpus, parts, tmp_path, monkeypatch):
    import ifas_model.training.trainer as trainer

    old = tmp_path / "old"
    shutil.copytree(pushed[0], old)
    summary = json.loads((old / "summary.json").read_text())
    summary["final"] = str(old / "final")  # what older versions recorded: the absolute path of the time
    (old / "summary.json").write_text(json.dumps(summary))
    moved = tmp_path / "moved"
    shutil.copytree(old, moved)
    shutil.rmtree(old / "final")  # the old place now holds something else (here: nothing)
    (old / "final").mkdir()
    (old / "final" / "config.json").write_text("{}")
    monkeypatch.setattr(trainer, "build_for_training", lambda *a, **k: pytest.fail("model built for a push"))
    hub = _Hub(monkeypatch)
    result = _invoke(*_args(corpus, moved, parts / "vision", parts / "text", "--push-to-hub", "org/other"))
    assert result.exit_code == 0, result.output
    assert " ".join(result.output.split()).count(f"the model is in {moved / 'final'}") == 1, result.output
    assert [u[:2] for u in hub.uploads] == [("org/other", str(moved / "final"))]
    assert json.loads((moved / "summary.json").read_text())["hub_repo"] == "org/other"

    def offline(api, repo_id, **kw):
        raise ConnectionError("no network")

    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", offline)
    line = _error_line(_invoke(*_args(corpus, moved, parts / "vision", parts / "text", "--push-to-hub", "org/x")))
    assert f"the model is saved in {moved / 'final'} and the summary in {moved / 'summary.json'}" in line


@pytest.mark.parametrize("which", ["vision", "text"])
def test_local_parts_with_only_pickled_weights_are_refused_in_one_line(corpus, parts, tmp_path, which):
    vision = parts / "bin" / "vision" if which == "vision" else parts / "vision"
    text = parts / "bin" / "text" if which == "text" else parts / "text"
    line = _error_line(_invoke(*_args(corpus, tmp_path / "run", vision, text)))
    what, folder, loader = (("vision model", vision, "CLIPVisionModel") if which == "vision"
                            else ("language model", text, "AutoModelForCausalLM"))
    assert line == (f"Error: {what} '{folder}': weights only as a pickle (pytorch_model.bin), and pickled weights "
                    "are never loaded (unpickling can run code); convert them once, where you trust the file: "
                    f"{loader}.from_pretrained(FOLDER, use_safetensors=False).save_pretrained(FOLDER, "
                    "safe_serialization=True)")
    assert not (tmp_path / "run" / "final").exists()


def test_a_part_folder_with_an_auto_map_is_refused(corpus, parts, tmp_path):
    text = tmp_path / "text"
    shutil.copytree(parts / "text", text)
    config = json.loads((text / "tokenizer_config.json").read_text())
    (text / "tokenizer_config.json").write_text(json.dumps({**config, "auto_map": {"AutoTokenizer": [None, "t.T"]}}))
    line = _error_line(_invoke(*_args(corpus, tmp_path / "run", parts / "vision", text)))
    assert line.startswith(f"Error: language model '{text}': tokenizer_config.json has an auto_map"), line
    assert "never run" in line and "trust_remote_code=True" not in line


def test_a_run_resumes_after_a_library_upgrade_and_records_the_new_versions(corpus, tmp_path, monkeypatch):
    import scf.schema

    out = tmp_path / "run"
    args = ["--dataset", corpus, "--preset", "tiny", "--out", out, "--max-steps", "2", "--batch-size", "4",
            "--eval-split", "none", "--save-every", "1"]
    assert _invoke(*args, "--stop-after-steps", "1").exit_code == 0
    upgraded = {**scf.schema.software_versions(), "torch": "99.0", "transformers": "99.1"}
    monkeypatch.setattr(scf.schema, "software_versions", lambda extra=(): upgraded)
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["versions"] == upgraded
    assert "- torch: 99.0" in (out / "final" / "README.md").read_text()
