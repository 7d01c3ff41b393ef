"""IFASForConditionalGeneration on the tiny preset: forward, frozen vision, save/load, score, generate, parts."""

from __future__ import annotations

import warnings

import pytest


@pytest.fixture(scope="module")
def built():
    from ifas_model.presets import build_model

    return build_model("tiny", seed=0)


def _images(n):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(n)
    return [Image.fromarray(rng.integers(0, 256, (80, 64, 3), dtype=np.uint8)) for _ in range(n)]


def _train_batch(processor, n=3):
    judgments = ["Yes", "No", "Yes"][:n]
    interps = ["This is a man with glasses", "This is a printed paper photo of a face", ""][:n]
    return processor(_images(n), judgments=judgments, interpretations=interps)


def test_forward_shapes_and_loss(built):
    model, processor = built
    batch = _train_batch(processor)
    out = model(**batch)
    b, t = batch["input_ids"].shape
    assert out.logits.shape == (b, t, model.config.text_config.vocab_size)
    assert out.loss.ndim == 0 and out.loss.requires_grad
    expected = 0.7 * out.loss_judgment + 0.3 * out.loss_interpretation
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert model.config.image_token_count == 4 + 3  # M + L of the tiny preset
    assert model.get_image_features(batch["pixel_values"]).shape == (b, 7, model.config.text_embed_dim)
    no_loss = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    assert no_loss.loss is None


def test_no_gac_model_feeds_the_same_number_of_visual_tokens():
    from ifas_model.presets import build_model

    model, processor = build_model("tiny", use_global_tokens=False, loss_type="plain")
    batch = _train_batch(processor, 2)
    assert model.get_image_features(batch["pixel_values"]).shape[1] == 7
    assert model.connector.global_projection is None
    out = model(**batch)
    assert out.loss.item() > 0


def test_vision_is_bit_identical_after_training_steps():
    import torch

    from ifas_model.adapters import apply_llm_training
    from ifas_model.presets import build_model

    model, processor = build_model("tiny", seed=1)
    apply_llm_training(model, "full")
    before = {k: v.clone() for k, v in model.vision_model.state_dict().items()}
    connector_before = model.connector.query_tokens.detach().clone()
    model.train()
    assert not model.vision_model.training and model.connector.training
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    batch = _train_batch(processor)
    for _ in range(3):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    after = model.vision_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.vision_model.parameters())
    assert not torch.equal(connector_before, model.connector.query_tokens)


def test_gradient_checkpointing_trains():
    from ifas_model.presets import build_model
    from ifas_model.training.trainer import enable_activation_checkpointing

    model, processor = build_model("tiny", seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated transformers name
        enable_activation_checkpointing(model)
    model.train()
    model(**_train_batch(processor, 2)).loss.backward()
    assert model.connector.query_tokens.grad.abs().sum() > 0


def test_save_load_gives_identical_logits(built, tmp_path):
    import torch
    from transformers import AutoModel

    from ifas_model.modeling import IFASForConditionalGeneration

    model, processor = built
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    batch = _train_batch(processor)
    loaded = IFASForConditionalGeneration.from_pretrained(tmp_path)
    auto = AutoModel.from_pretrained(tmp_path)  # registered in process, no trust_remote_code
    assert type(auto) is IFASForConditionalGeneration
    assert not loaded.vision_trainable
    with torch.no_grad():
        ref = model.eval()(**batch)
        for other in (loaded, auto):
            out = other.eval()(**batch)
            assert torch.equal(ref.logits, out.logits)
            assert torch.equal(ref.loss, out.loss)


def test_loading_another_architecture_names_its_model_type(built, tmp_path):
    from transformers import Blip2Config, CLIPVisionModel

    from ifas_model.configuration import IFASConfig
    from ifas_model.modeling import IFASForConditionalGeneration

    model, _ = built
    clip_dir, blip_dir = tmp_path / "clip", tmp_path / "blip2"
    CLIPVisionModel(model.config.vision_config).save_pretrained(clip_dir)
    Blip2Config().save_pretrained(blip_dir)
    with pytest.raises(ValueError, match="'clip_vision_model'"):
        IFASForConditionalGeneration.from_pretrained(clip_dir)
    with pytest.raises(ValueError, match="'blip-2'.*from_pretrained_parts"):
        IFASForConditionalGeneration.from_pretrained(blip_dir)
    with pytest.raises(ValueError, match="'blip-2'"):
        IFASConfig.from_pretrained(blip_dir)


def test_score_is_the_softmax_at_the_answer_position(built):
    import torch

    model, processor = built
    model.eval()
    prompt = processor(_images(3))
    with torch.no_grad():
        logits = model(**prompt).logits  # (B, T, V), last column = answer position (left padding)
    probs = logits[:, -1].float().softmax(-1)
    yes, no = processor.judgment_token_ids["Yes"], processor.judgment_token_ids["No"]
    assert torch.allclose(model.score(**prompt), probs[:, yes], atol=1e-6)
    two_way = model.score(**prompt, normalize="yes_no")
    assert torch.allclose(two_way, probs[:, yes] / (probs[:, yes] + probs[:, no]), atol=1e-6)
    with pytest.raises(ValueError, match="normalize"):
        model.score(**prompt, normalize="softmax")


def test_score_finds_the_answer_position_under_right_padding(built):
    """A right-padded row is scored at its last real token, as a left-padded one is."""
    import torch

    model, processor = built
    model.eval()
    prompt = processor(_images(2))
    pad = processor.pad_token_id
    ids = torch.cat([prompt["input_ids"], torch.full((2, 3), pad)], dim=1)
    mask = torch.cat([prompt["attention_mask"], torch.zeros(2, 3, dtype=torch.long)], dim=1)
    right = model.score(prompt["pixel_values"], ids, mask)
    assert torch.allclose(right, model.score(**prompt), atol=1e-5)


def test_trained_judgment_token_is_the_scored_token():
    """The id the loss trains as the judgment (segment 1) is the id `score` reads, for Yes and for No:
    ids agree, and a few steps on judgment-only "Yes" answers raise the score, on "No" answers lower it."""
    import torch

    from ifas_model.presets import build_model

    for word in ("Yes", "No"):
        model, processor = build_model("tiny", seed=3)
        batch = processor(_images(4), judgments=[word] * 4)
        trained = batch["labels"][batch["answer_segments"] == 1].unique().tolist()
        assert trained == [processor.judgment_token_ids[word]]
        assert trained == [model.config.yes_token_id if word == "Yes" else model.config.no_token_id]
        prompt = processor(_images(4))
        model.eval()
        before = model.score(**prompt, normalize="yes_no").mean().item()
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
        model.train()
        for _ in range(4):
            optimizer.zero_grad()
            model(**batch).loss.backward()
            optimizer.step()
        model.eval()
        after = model.score(**prompt, normalize="yes_no").mean().item()
        assert (after > before + 0.05) if word == "Yes" else (after < before - 0.05), (word, before, after)


def test_generate_returns_answer_tokens_and_text(built):
    model, processor = built
    prompt = processor(_images(2))
    ids = model.generate(**prompt, max_new_tokens=6)
    assert ids.shape[0] == 2 and 1 <= ids.shape[1] <= 6
    texts = processor.batch_decode(ids)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    out = model.generate(**prompt, max_new_tokens=3, output_logits=True, return_dict_in_generate=True)
    first = out.logits[0].float().softmax(-1)[:, model.config.yes_token_id]
    assert first.allclose(model.score(**prompt), atol=1e-5)


@pytest.fixture(scope="module")
def local_parts(tmp_path_factory, built):
    """A tiny CLIP vision model and a tiny OPT + tokenizer saved to folders, as real parts would be."""
    import torch
    from transformers import CLIPVisionModel, OPTForCausalLM

    model, processor = built
    root = tmp_path_factory.mktemp("parts")
    torch.manual_seed(5)
    vision = CLIPVisionModel(model.config.vision_config)
    vision.save_pretrained(root / "clip")
    text = OPTForCausalLM(model.config.text_config)
    text.save_pretrained(root / "opt")
    processor.tokenizer.save_pretrained(root / "opt")
    return root / "clip", root / "opt", vision, text


def test_from_pretrained_parts_loads_local_parts(local_parts, tmp_path):
    import torch

    from ifas_model.modeling import IFASForConditionalGeneration
    from ifas_model.processing import IFASProcessor

    clip_dir, opt_dir, vision, text = local_parts
    model = IFASForConditionalGeneration.from_pretrained_parts(vision=clip_dir, text=opt_dir, num_queries=3,
                                                                lopsided_alpha=0.6)
    assert model.config.image_token_count == 3 + 3 and model.config.lopsided_alpha == 0.6
    assert model.config.connector_config.hidden_size == vision.config.hidden_size  # D defaults to the vision width
    assert model.config.base_models == [str(clip_dir), str(opt_dir)]
    for key, value in vision.state_dict().items():
        assert torch.equal(model.vision_model.state_dict()[key], value), key
    for key, value in text.state_dict().items():
        assert torch.equal(model.language_model.state_dict()[key], value), key
    assert not model.vision_trainable and not model.connector.query_tokens.is_meta
    processor = IFASProcessor.from_pretrained_parts(vision=clip_dir, text=opt_dir)
    assert processor.judgment_token_ids == {"Yes": model.config.yes_token_id, "No": model.config.no_token_id}
    batch = processor(_images(2), judgments=["Yes", "No"], interpretations=["This is a man", "This is a mask"])
    assert torch.isfinite(model(**batch).loss)
    model.save_pretrained(tmp_path)  # the assembled model is an ordinary I-FAS checkpoint
    again = IFASForConditionalGeneration.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again.eval()(**batch).logits)


def test_build_model_accepts_part_paths(local_parts):
    from ifas_model.presets import build_model

    clip_dir, opt_dir, _, _ = local_parts
    model, processor = build_model("tiny", vision_model=str(clip_dir), language_model=str(opt_dir), depth=2)
    assert len(model.connector.blocks) == 2
    assert processor.judgment_token_ids["Yes"] == model.config.yes_token_id
    with pytest.raises(ValueError, match="both vision_model and language_model"):
        build_model("tiny", vision_model=str(clip_dir))
