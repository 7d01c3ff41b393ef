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
