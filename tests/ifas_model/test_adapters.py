"""What trains: LoRA / QLoRA / full / frozen LLM, vision always frozen, merged checkpoints load in one call."""

from __future__ import annotations

import pytest


def _batch(processor):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)) for _ in range(2)]
    return processor(images, judgments=["Yes", "No"], interpretations=["This is a man", "This is a paper mask"])


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _perturb_lora(model):
    import torch

    with torch.no_grad():
        torch.manual_seed(0)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # B starts at zero; make the adapters matter


@pytest.mark.parametrize("mode", ["lora", "qlora"])
def test_lora_is_applied_then_merged_for_save(mode, tmp_path):
    import torch

    from ifas_model.adapters import apply_llm_training, merge_for_save
    from ifas_model.modeling import IFASForConditionalGeneration
    from ifas_model.presets import build_model

    model, processor = build_model("tiny", seed=0)
    batch = _batch(processor)
    with torch.no_grad():
        plain = model(**batch).logits
    apply_llm_training(model, mode, lora_r=4, lora_alpha=8)
    trainable = _trainable(model)
    lm = {n for n in trainable if n.startswith("language_model.")}
    assert lm and all("lora_" in n for n in lm)
    assert {n.split(".")[-4] for n in lm} == {"q_proj", "k_proj", "v_proj", "out_proj"}
    assert not any(n.startswith("vision_model.") for n in trainable)
    assert any(n.startswith("connector.") for n in trainable) and "language_projection.weight" in trainable
    assert model.config.llm_training == mode and model.config.lora_r == 4
    if mode == "qlora":
        fc1 = model.language_model.model.decoder.layers[0].fc1
        assert type(fc1).__name__ == "Linear4bit" and fc1.weight.dtype == torch.uint8
    # one training step moves the adapters
    model.train()
    model(**batch).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_A" in n or "lora_B" in n)
    model.zero_grad()

    _perturb_lora(model)
    model.eval()
    with torch.no_grad():
        adapted = model(**batch).logits
    assert not torch.allclose(adapted, plain, atol=1e-3)
    merge_for_save(model)
    assert not any("lora_" in n for n, _ in model.named_parameters())
    assert all(type(m).__name__ != "Linear4bit" for m in model.modules())
    with torch.no_grad():
        merged = model(**batch).logits
    # LoRA merges exactly; QLoRA's 4-bit kernel computes in lower precision than the dequantized matmul
    assert torch.allclose(merged, adapted, atol=1e-4 if mode == "lora" else 1e-2)
    model.save_pretrained(tmp_path)
    loaded = IFASForConditionalGeneration.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(**batch).logits, merged)


@pytest.mark.parametrize("mode", ["full", "frozen"])
def test_full_and_frozen_modes(mode):
    from ifas_model.adapters import apply_llm_training, merge_for_save
    from ifas_model.presets import build_model

    model, _ = build_model("tiny", seed=0)
    apply_llm_training(model, mode)
    trainable = _trainable(model)
    lm = {n for n, _ in model.named_parameters() if n.startswith("language_model.")}
    assert (lm <= trainable) if mode == "full" else not (lm & trainable)
    assert not any(n.startswith("vision_model.") for n in trainable)
    assert {n for n in trainable if not n.startswith("language_model.")} == {
        n for n, _ in model.named_parameters() if n.startswith(("connector.", "language_projection."))
    }
    assert merge_for_save(model) is model  # nothing to merge


def test_default_mode_comes_from_the_config_and_bad_modes_fail():
    from ifas_model.adapters import apply_llm_training, freeze_vision
    from ifas_model.presets import build_model

    model, _ = build_model("tiny", seed=0, llm_training="frozen")
    model.vision_model.requires_grad_(True)
    freeze_vision(model)
    assert not model.vision_trainable and not model.vision_model.training
    apply_llm_training(model)
    assert not any(n.startswith("language_model.") for n in _trainable(model))
    with pytest.raises(ValueError, match="full, lora, qlora, frozen"):
        apply_llm_training(model, "adapters")
    lora_model, _ = build_model("tiny", seed=0)
    apply_llm_training(lora_model, "lora")
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_llm_training(lora_model, "lora")


def test_qlora_builds_its_4bit_layers_on_the_meta_device_then_fills_them_from_the_dense_ones(monkeypatch):
    """review14 #9: no fp32 layer is allocated and initialised on the host just to be replaced."""
    import bitsandbytes as bnb
    import torch

    from ifas_model.adapters import apply_llm_training
    from ifas_model.presets import build_model

    built = []
    original = bnb.nn.Linear4bit.__init__

    def spy(self, *args, **kwargs):
        built.append(kwargs.get("device"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(bnb.nn.Linear4bit, "__init__", spy)
    model, _ = build_model("tiny", seed=0)
    dense = {n: (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
             for n, m in model.language_model.named_modules() if type(m) is torch.nn.Linear
             and n != "lm_head"}
    apply_llm_training(model, "qlora", lora_r=4, lora_alpha=8)
    assert built and set(built) == {"meta"}
    assert not [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    fc1_name = next(n for n in dense if n.endswith("layers.0.fc1"))
    fc1 = model.language_model.get_submodule(fc1_name)
    assert type(fc1).__name__ == "Linear4bit" and fc1.weight.dtype == torch.uint8
    assert torch.equal(fc1.bias.float(), dense[fc1_name][1])  # the dense layer's bias, not a fresh one
    restored = bnb.functional.dequantize_4bit(fc1.weight.data, fc1.weight.quant_state).float()
    weight = dense[fc1_name][0]
    assert restored.shape == weight.shape
    assert (restored - weight).abs().max() <= 0.2 * weight.abs().max()  # NF4 of the dense weight, not noise
