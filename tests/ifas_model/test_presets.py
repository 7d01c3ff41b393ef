"""Model presets: every preset is defined, the tiny one builds offline, bad names and keys are errors."""

from __future__ import annotations

import pytest


def test_presets_name_the_papers_parts():
    from ifas_model.presets import MODEL_PRESETS

    assert set(MODEL_PRESETS) == {"default", "tiny"}
    assert MODEL_PRESETS["default"].vision == "openai/clip-vit-large-patch14"
    assert MODEL_PRESETS["default"].text == "facebook/opt-2.7b"


def test_tiny_builds_with_overrides():
    from ifas_model.presets import build_model

    model, processor = build_model("tiny", seed=0, num_queries=6, depth=2, lopsided_alpha=0.5, loss_type="plain")
    assert model.config.image_token_count == 6 + 3
    assert len(model.connector.blocks) == 2
    assert model.config.lopsided_alpha == 0.5 and model.config.loss_type == "plain"
    assert not model.training and not model.vision_trainable
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    assert processor.judgment_token_ids == {"Yes": model.config.yes_token_id, "No": model.config.no_token_id}


def test_tiny_is_deterministic_per_seed():
    import torch

    from ifas_model.presets import build_model

    a, _ = build_model("tiny", seed=4)
    b, _ = build_model("tiny", seed=4)
    c, _ = build_model("tiny", seed=5)
    assert torch.equal(a.connector.query_tokens, b.connector.query_tokens)
    assert not torch.equal(a.connector.query_tokens, c.connector.query_tokens)


def test_tiny_tokenizer_has_single_token_judgments():
    from ifas_model.presets import build_tiny_tokenizer
    from scf.schema import QUESTION

    tok = build_tiny_tokenizer()
    assert len(tok(" Yes", add_special_tokens=False)["input_ids"]) == 1
    assert len(tok(" No", add_special_tokens=False)["input_ids"]) == 1
    ids = tok(QUESTION)["input_ids"]
    assert ids[0] == tok.bos_token_id == tok.eos_token_id  # OPT-style </s> as BOS
    assert tok.decode(ids, skip_special_tokens=True) == QUESTION


def test_bad_preset_and_bad_override_are_errors():
    from ifas_model.presets import build_model

    with pytest.raises(ValueError, match="default, tiny"):
        build_model("huge")
    with pytest.raises(ValueError, match="unknown model setting 'num_querys'"):
        build_model("tiny", num_querys=3)
