"""Loading errors name what failed: a missing checkpoint folder by its path, a failing base part by part and id."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("path", ["/nonexistent/x", "./no-such-folder", "~/no-such-ifas-folder", "a/b/c"])
def test_a_missing_local_checkpoint_is_named_as_a_folder(path, monkeypatch, tmp_path):
    from ifas_model.modeling import IFASForConditionalGeneration
    from ifas_model.processing import IFASProcessor

    monkeypatch.chdir(tmp_path)
    for load in (IFASForConditionalGeneration.from_pretrained, IFASProcessor.from_pretrained):
        with pytest.raises(FileNotFoundError, match=f"^checkpoint folder not found: {path}$"):
            load(path)


def test_existing_parent_folder_makes_a_path_local(tmp_path, monkeypatch):
    from ifas_model._loading import looks_like_local_path

    monkeypatch.chdir(tmp_path)
    assert not looks_like_local_path("openai/clip-vit-large-patch14")
    assert not looks_like_local_path("gpt2")
    (tmp_path / "runs").mkdir()
    assert looks_like_local_path("runs/final")  # runs/ exists here: a typo in a run folder, not a Hub id


def test_a_failing_base_part_is_named_with_its_id(monkeypatch):
    from transformers import CLIPVisionModel

    from ifas_model.modeling import IFASForConditionalGeneration

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files,\nand couldn't find them")

    monkeypatch.setattr(CLIPVisionModel, "from_pretrained", offline)
    with pytest.raises(OSError) as info:
        IFASForConditionalGeneration.from_pretrained_parts(vision="openai/clip-vit-large-patch14",
                                                           text="facebook/opt-2.7b")
    assert str(info.value) == ("vision model 'openai/clip-vit-large-patch14': We couldn't connect to "
                               "'https://huggingface.co' to load the files, and couldn't find them")
    with pytest.raises(FileNotFoundError, match="^language model folder not found: /nonexistent/opt$"):
        IFASForConditionalGeneration.from_pretrained_parts(vision="openai/clip-vit-large-patch14",
                                                           text="/nonexistent/opt")


def test_a_saved_checkpoint_still_loads_by_relative_path(tmp_path, monkeypatch):
    from ifas_model.modeling import IFASForConditionalGeneration
    from ifas_model.presets import build_model
    from ifas_model.processing import IFASProcessor

    model, processor = build_model("tiny")
    model.save_pretrained(tmp_path / "run" / "final")
    processor.save_pretrained(tmp_path / "run" / "final")
    monkeypatch.chdir(tmp_path)
    assert IFASForConditionalGeneration.from_pretrained("run/final").config.model_type == "ifas"
    assert IFASProcessor.from_pretrained("./run/final").judgment_token_ids == processor.judgment_token_ids


@pytest.mark.parametrize("lost", ["tokenizer_config.json", "tokenizer.json"])
def test_a_checkpoint_missing_a_tokenizer_file_names_it(tmp_path, lost):
    """review20 L1: without tokenizer_config.json transformers' tokenizer had no eos_token ("the tokenizer has no
    eos_token"); without tokenizer.json it asked for sentencepiece or tiktoken. Now the missing file is named."""
    from ifas_model.presets import build_model
    from ifas_model.processing import IFASProcessor

    _, processor = build_model("tiny")
    processor.save_pretrained(tmp_path / "final")
    assert IFASProcessor.from_pretrained(tmp_path / "final").eos_token_id == processor.eos_token_id
    (tmp_path / "final" / lost).unlink()
    with pytest.raises(FileNotFoundError, match=rf"^{tmp_path / 'final'}: no {lost}( \(or vocab.json \+ merges.txt\))?: "
                                                 "the checkpoint's tokenizer is incomplete"):
        IFASProcessor.from_pretrained(tmp_path / "final")


def test_loading_the_processor_first_gives_no_model_type_warning(tmp_path):
    """review20 L4: IFASProcessor.from_pretrained before anything imported ifas_model.modeling printed
    transformers' "You are using a model of type `ifas` to instantiate a model of type ``" (AutoTokenizer reads
    config.json through AutoConfig, which did not know "ifas" yet)."""
    import subprocess
    import sys

    from ifas_model.presets import build_model

    model, processor = build_model("tiny")
    model.save_pretrained(tmp_path / "final")
    processor.save_pretrained(tmp_path / "final")
    code = ("from ifas_model.processing import IFASProcessor; "
            f"print(IFASProcessor.from_pretrained({str(tmp_path / 'final')!r}).eos_token_id)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(processor.eos_token_id)
    assert "model of type" not in proc.stderr, proc.stderr


def test_a_git_lfs_pointer_in_place_of_the_weights_says_git_lfs_pull(tmp_path):
    """review26 L2: a Hub repository cloned without git-lfs leaves a 130-byte pointer file; it was called "cut
    short (a full disk or a partial copy?)"."""
    from ifas_model._loading import WeightsUnreadable
    from ifas_model.modeling import IFASForConditionalGeneration
    from ifas_model.presets import build_model

    model, _ = build_model("tiny")
    model.save_pretrained(tmp_path / "final")
    (tmp_path / "final" / "model.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 123456789\n")
    with pytest.raises(WeightsUnreadable, match=r"model\.safetensors: a Git LFS pointer, not the weights .*"
                                                r"run `git lfs pull`"):
        IFASForConditionalGeneration.from_pretrained(tmp_path / "final")
