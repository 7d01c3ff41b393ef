"""ifas-train's mixed precision: trainable weights fp32 (AdamW masters), frozen ones bf16, fused AdamW on CUDA."""

from __future__ import annotations

import pytest
from _train_corpus import build_corpus

MODES = ("frozen", "full", "lora", "qlora")


def _half_loaded_model():
    """The tiny model as transformers 5 loads a half-precision checkpoint (``dtype="auto"``): all weights bf16."""
    import torch

    from ifas_model.presets import build_model

    model, processor = build_model("tiny", seed=0)
    return model.to(torch.bfloat16), processor


def _dtypes(model, prefix):
    return {p.dtype for n, p in model.named_parameters() if n.startswith(prefix) and p.is_floating_point()}


@pytest.mark.parametrize("mode", MODES)
def test_trainable_weights_become_fp32_and_frozen_ones_bf16(mode):
    import torch

    from ifas_model.adapters import apply_llm_training, set_training_dtypes

    model, _ = _half_loaded_model()
    apply_llm_training(model, mode, lora_r=4, lora_alpha=8, compute_dtype=torch.bfloat16)
    counts = set_training_dtypes(model, torch.bfloat16)
    for name, p in model.named_parameters():
        if p.is_floating_point():
            assert p.dtype == (torch.float32 if p.requires_grad else torch.bfloat16), (name, p.dtype)
    assert _dtypes(model, "vision_model.") == {torch.bfloat16}
    assert _dtypes(model, "connector.") == {torch.float32}
    assert counts["trainable_fp32"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    lm = model.language_model
    if mode == "full":
        assert _dtypes(model, "language_model.") == {torch.float32}
    elif mode == "frozen":
        assert _dtypes(model, "language_model.") == {torch.bfloat16}
    else:
        adapters = {p.dtype for n, p in lm.named_parameters() if "lora_" in n}
        assert adapters == {torch.float32}
        assert lm.get_input_embeddings().weight.dtype == torch.bfloat16
    if mode == "qlora":  # the 4-bit weights are not touched
        fc1 = lm.model.decoder.layers[0].fc1
        assert fc1.weight.dtype == torch.uint8
    # fp32 everywhere when no autocast dtype is given (``--precision fp32``)
    set_training_dtypes(model, None)
    assert {p.dtype for p in model.parameters() if p.is_floating_point()} == {torch.float32}


def test_an_update_at_the_papers_learning_rate_survives_only_with_fp32_masters():
    """The reason for fp32 master weights: lr 1e-5 moves a weight by far less than bf16 can represent."""
    import torch

    from ifas_model.adapters import apply_llm_training, set_training_dtypes
    from ifas_model.training.trainer import build_adamw

    def moved_fraction(cast: bool) -> float:
        model, _ = _half_loaded_model()
        apply_llm_training(model, "full")
        if cast:
            set_training_dtypes(model, torch.bfloat16)
        weight = model.language_model.model.decoder.layers[0].fc1.weight
        before = weight.detach().clone()
        weight.grad = torch.ones_like(weight)  # Adam's first step moves every element by ~lr
        opt = build_adamw(model, learning_rate=1e-5, weight_decay=0.0)
        opt.step()
        return float((weight.detach() != before).float().mean())

    assert moved_fraction(cast=True) == 1.0
    assert moved_fraction(cast=False) < 0.2  # bf16 weights lose most such updates


def test_adamw_uses_the_plain_loop_on_cpu_and_decays_only_matrices():
    from ifas_model.adapters import apply_llm_training
    from ifas_model.presets import build_model
    from ifas_model.training.trainer import build_adamw

    model, _ = build_model("tiny", seed=0)
    apply_llm_training(model, "frozen")
    opt = build_adamw(model, learning_rate=1e-3, weight_decay=0.01)
    assert not opt.defaults.get("fused")
    decays = {g["weight_decay"]: g["params"] for g in opt.param_groups}
    assert all(p.ndim >= 2 for p in decays[0.01]) and all(p.ndim < 2 for p in decays[0.0])
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(1 for p in model.parameters() if p.requires_grad)


@pytest.mark.gpu
def test_adamw_is_fused_on_cuda():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from ifas_model.adapters import apply_llm_training
    from ifas_model.presets import build_model
    from ifas_model.training.trainer import build_adamw

    model, _ = build_model("tiny", seed=0)
    apply_llm_training(model, "frozen")
    opt = build_adamw(model.cuda(), learning_rate=1e-3, weight_decay=0.01)
    assert opt.defaults["fused"] is True


def test_bf16_training_run_keeps_frozen_weights_in_bf16_and_matches_fp32(tmp_path):
    """``--precision bf16`` (what ``auto`` means on CUDA): the run trains, saves and loads; its losses follow the
    fp32 run's within bf16 tolerance."""
    import json

    import torch

    from ifas_model.modeling import IFASForConditionalGeneration
    from ifas_model.training.config import resolve_config
    from ifas_model.training.trainer import Trainer

    corpus = build_corpus(tmp_path / "vqa", splits=("train",), max_rows=16)

    def run(precision: str) -> tuple[Trainer, list[float]]:
        config = resolve_config({"dataset": str(corpus), "preset": "tiny", "output_dir": str(tmp_path / precision),
                                 "batch_size": 4, "max_steps": 3, "save_every": 0, "eval_split": "none",
                                 "llm": "lora", "lora_dropout": 0.0, "log_every": 1, "learning_rate": 1e-3,
                                 "precision": precision})
        trainer = Trainer(config)
        trainer.fit()
        lines = (tmp_path / precision / "metrics.jsonl").read_text().splitlines()
        return trainer, [json.loads(x)["loss"] for x in lines if json.loads(x)["split"] == "train"]

    bf16, bf16_losses = run("bf16")
    fp32, fp32_losses = run("fp32")
    assert bf16.autocast_dtype == torch.bfloat16 and fp32.autocast_dtype is None
    assert bf16.model.vision_model.embeddings.patch_embedding.weight.dtype == torch.bfloat16
    assert bf16.model.connector.query_tokens.dtype == torch.float32
    assert fp32.model.vision_model.embeddings.patch_embedding.weight.dtype == torch.float32
    assert len(bf16_losses) == len(fp32_losses) == 3
    assert all(abs(a - b) <= 0.05 * abs(b) + 0.02 for a, b in zip(bf16_losses, fp32_losses, strict=True))
    # the final checkpoint (LoRA merged into the bf16 base) loads in one call, in either dtype
    for dtype in (torch.float32, torch.bfloat16):
        loaded = IFASForConditionalGeneration.from_pretrained(tmp_path / "bf16" / "final", dtype=dtype,
                                                              use_safetensors=True)
        assert {p.dtype for p in loaded.parameters()} == {dtype}


def test_a_bf16_runs_final_model_loads_in_fp32_with_one_call(tmp_path):
    """A GPU run saves frozen weights in bf16 and trained ones in fp32 (config.json then records bfloat16):
    from_pretrained without dtype still loads fp32, keeping the trained weights exactly; dtype= still works."""
    import json

    import torch

    from ifas_model.adapters import apply_llm_training, set_training_dtypes
    from ifas_model.modeling import IFASForConditionalGeneration
    from ifas_model.presets import build_model

    model, _ = build_model("tiny", seed=0)
    apply_llm_training(model, "full")
    set_training_dtypes(model, torch.bfloat16)
    with torch.no_grad():
        model.connector.query_tokens.add_(1e-6)  # a change bf16 cannot hold
    model.save_pretrained(tmp_path / "final")
    assert json.loads((tmp_path / "final" / "config.json").read_text()).get("dtype") == "bfloat16"
    loaded = IFASForConditionalGeneration.from_pretrained(tmp_path / "final")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert torch.equal(loaded.connector.query_tokens, model.connector.query_tokens)
    assert torch.equal(loaded.vision_model.embeddings.patch_embedding.weight,
                       model.vision_model.embeddings.patch_embedding.weight.float())
    half = IFASForConditionalGeneration.from_pretrained(tmp_path / "final", dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def test_lora_merged_over_a_bf16_base_keeps_the_update_in_fp32():
    """A GPU LoRA run holds the frozen base in bf16; merging in bf16 would round most of a small update away."""
    import torch

    from ifas_model.adapters import apply_llm_training, merge_for_save, set_training_dtypes
    from ifas_model.presets import build_model

    model, _ = build_model("tiny", seed=0)
    apply_llm_training(model, "lora", lora_r=4, lora_alpha=8)
    set_training_dtypes(model, torch.bfloat16)
    layer = model.language_model.model.decoder.layers[0].self_attn.q_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 1e-4)  # a small trained update
    expected = layer.get_base_layer().weight.float() + layer.get_delta_weight("default").float()
    merge_for_save(model)
    merged = model.language_model.model.decoder.layers[0].self_attn.q_proj
    assert merged.weight.dtype == torch.float32
    torch.testing.assert_close(merged.weight, expected, rtol=0, atol=1e-7)


def test_score_under_autocast_keeps_the_fp32_answer_row():
    """ifas-train evaluates under bf16 autocast: the answer row must still be computed in fp32."""
    import torch

    from ifas_model.presets import build_model

    model, processor = build_model("tiny", seed=0)
    model.eval()
    images = [__import__("PIL.Image", fromlist=["Image"]).new("RGB", (48, 48), (i * 40, 90, 120)) for i in range(3)]
    inputs = processor(images)
    seen = {}
    head = model.get_output_embeddings()
    real_linear = torch.nn.functional.linear

    def spy(x, w, b=None):
        out = real_linear(x, w, b)
        if w is not None and w.shape == head.weight.shape:
            seen["dtype"] = out.dtype  # autocast would make it bf16
        return out

    torch.nn.functional.linear = spy
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model.score(**inputs)
    finally:
        torch.nn.functional.linear = real_linear
    assert seen["dtype"] == torch.float32
