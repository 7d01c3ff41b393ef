"""What trains in I-FAS: the frozen vision tower, and the LLM in full, with LoRA, with QLoRA, or frozen.

The connector (GAC) and the language projection always train. The vision tower never does (paper: "frozen
visual encoder"). For the LLM (`IFASConfig.llm_training`, default "full" as in the paper; the reasons are in its docstring):

* ``full``: every LLM weight trains.
* ``lora``: LoRA adapters (peft) on OPT's attention projections ``q_proj``, ``k_proj``, ``v_proj``,
  ``out_proj``; the base weights are frozen. The adapters are injected in place (`peft.inject_adapter_in_model`),
  so the module tree and parameter names outside the adapted layers do not change and the model's
  forward/score/generate work unchanged.
* ``qlora``: the same LoRA on a 4-bit NF4 base (bitsandbytes `Linear4bit`) for every linear layer of the LLM
  decoder (the tied LM head and embeddings stay in the compute dtype). bitsandbytes 0.50 quantizes on CPU as
  well as CUDA, so the tiny model tests it here; on a real model it is meant for a CUDA GPU.
* ``frozen``: the LLM does not train (connector-only training, as BLIP-2's second stage).

`merge_for_save` folds the adapters (and a 4-bit base) back into plain dense `nn.Linear` layers, so a saved
checkpoint is an ordinary I-FAS checkpoint that loads with one ``from_pretrained`` call.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .modeling import IFASForConditionalGeneration

logger = logging.getLogger(__name__)

LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")
"""OPT attention projections adapted by LoRA (and QLoRA)."""


def freeze_vision(model: IFASForConditionalGeneration) -> IFASForConditionalGeneration:
    """Freeze the vision tower (no gradients) and put it in eval mode; `model.train()` keeps it there.

    Returns:
        The same model.
    """
    model.vision_model.requires_grad_(False)
    model.vision_model.eval()
    return model


def apply_llm_training(
    model: IFASForConditionalGeneration,
    mode: str | None = None,
    *,
    lora_r: int | None = None,
    lora_alpha: int | None = None,
    lora_dropout: float | None = None,
    target_modules: tuple[str, ...] = LORA_TARGET_MODULES,
    compute_dtype: torch.dtype | None = None,
) -> IFASForConditionalGeneration:
    """Set which parameters train: vision frozen, connector + projection trained, the LLM per `mode`.

    Args:
        model: an I-FAS model (not yet adapted).
        mode: "full" | "lora" | "qlora" | "frozen"; None = `model.config.llm_training`.
        lora_r, lora_alpha, lora_dropout: LoRA settings; None = the config's (`lora_r`, `lora_alpha`,
            `lora_dropout`). The values used are written back to the config.
        target_modules: LLM linear layers that get adapters (OPT names by default).
        compute_dtype: qlora only: dtype of the 4-bit layers' matmuls; None = the LLM's current dtype.

    Returns:
        The same model object, adapted in place.

    Raises:
        ValueError: unknown mode, or the model already carries adapters.
    """
    import torch

    from .configuration import LLM_TRAINING_MODES

    config = model.config
    mode = mode or config.llm_training
    if mode not in LLM_TRAINING_MODES:
        raise ValueError(f"llm_training mode must be one of {', '.join(LLM_TRAINING_MODES)}, got {mode!r}")
    if any("lora_" in name for name, _ in model.language_model.named_parameters()):
        raise ValueError("the language model already has LoRA adapters; apply_llm_training runs once per model")
    freeze_vision(model)
    model.connector.requires_grad_(True)
    model.language_projection.requires_grad_(True)
    lm = model.language_model
    config.llm_training = mode
    if mode == "full":
        lm.requires_grad_(True)
    elif mode == "frozen":
        lm.requires_grad_(False)
    else:
        from peft import LoraConfig, inject_adapter_in_model

        config.lora_r = int(lora_r if lora_r is not None else config.lora_r)
        config.lora_alpha = int(lora_alpha if lora_alpha is not None else config.lora_alpha)
        config.lora_dropout = float(lora_dropout if lora_dropout is not None else config.lora_dropout)
        if mode == "qlora":
            dtype = compute_dtype or lm.get_input_embeddings().weight.dtype
            n = _quantize_4bit(lm.base_model, torch.float32 if dtype == torch.float64 else dtype)
            logger.info("qlora: %d linear layers of the language model quantized to 4-bit NF4", n)
        lm.requires_grad_(False)
        lora = LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=list(target_modules), bias="none",
        )
        inject_adapter_in_model(lora, lm)
        n_adapters = 0
        for name, param in lm.named_parameters():
            if "lora_" in name:
                param.requires_grad_(True)
                n_adapters += 1
        if n_adapters == 0:
            raise ValueError(f"no LLM layer matched the LoRA target modules {list(target_modules)}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("llm_training=%s: %d trainable parameters", mode, trainable)
    return model


def _quantize_4bit(module: torch.nn.Module, compute_dtype: torch.dtype) -> int:
    """Replace every `nn.Linear` under `module` by a bitsandbytes NF4 `Linear4bit`, in place; returns the count."""
    import bitsandbytes as bnb
    import torch

    count = 0
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            device = child.weight.device
            # Built on the meta device: its own weight (and bias) are replaced right below, so allocating and
            # initialising them (about 2.5 B fp32 values on the host for OPT-2.7B) would be wasted work.
            q = bnb.nn.Linear4bit(
                child.in_features, child.out_features, bias=child.bias is not None,
                compute_dtype=compute_dtype, quant_type="nf4", device="meta",
            )
            q.weight = bnb.nn.Params4bit(
                child.weight.data.to(torch.float32 if device.type == "cpu" else compute_dtype).contiguous(),
                requires_grad=False, quant_type="nf4",
                # 64 is bitsandbytes' block size; a narrower layer (tiny test models) needs a smaller block.
                blocksize=64 if child.in_features % 64 == 0 else 32,
            )
            if child.bias is not None:
                q.bias = torch.nn.Parameter(child.bias.data.to(compute_dtype), requires_grad=False)
            if hasattr(q, "support_avx512bf16_for_cpu"):
                # recent bitsandbytes (0.50) on a CPU with AVX512-BF16: an eval-mode no-grad forward repacks the
                # weight for its inference-only CPU kernel, and every later forward (training included) then
                # takes that path, which has no autograd and fails at the first training step after an
                # evaluation. Training needs the plain path; older versions lack the attribute and the packing.
                q.support_avx512bf16_for_cpu = False
            setattr(parent, child_name, q.to(device))  # moving the Params4bit quantizes it
            count += 1
    return count


def _dense_weight(layer: torch.nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """The weight of an `nn.Linear` or a bitsandbytes `Linear4bit` as a dense tensor of `dtype`."""
    import torch

    if type(layer) is torch.nn.Linear:
        return layer.weight.data.to(dtype)
    from bitsandbytes.functional import dequantize_4bit

    data, state = layer.weight.data, layer.weight.quant_state
    if getattr(state, "packing_format_for_cpu", False):
        # bitsandbytes repacks the weight for its CPU kernel on the first eval forward; undo that first.
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

        data, state = _convert_weight_packed_for_cpu_inverse(data, state)
    return dequantize_4bit(data, state).to(dtype)


def merge_for_save(model: IFASForConditionalGeneration) -> IFASForConditionalGeneration:
    """Fold LoRA adapters (and a 4-bit base) into dense `nn.Linear` layers, in place, for `save_pretrained`.

    After this the LLM has no adapter and no quantized layer. A layer that had adapters becomes
    W + (lora_alpha / r) * B A in float32 (after `set_training_dtypes` the base W may be bf16, whose spacing
    would round most of a small LoRA update away); a 4-bit layer without adapters is dequantized to the dtype
    of the LLM's embeddings, and ``model.save_pretrained(dir)`` writes a checkpoint that
    ``IFASForConditionalGeneration.from_pretrained(dir)`` loads in one call. A model without adapters is
    returned unchanged. Training cannot continue on the adapters afterwards (they are gone).

    Returns:
        The same model object.
    """
    import torch

    lm = model.language_model
    dtype = lm.get_input_embeddings().weight.dtype
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover - peft is a dependency; without it there are no adapters
        LoraLayer = ()  # noqa: N806
    merged = dequantized = 0
    for parent in list(lm.modules()):
        for child_name, child in list(parent.named_children()):
            if LoraLayer and isinstance(child, LoraLayer):
                base = child.get_base_layer()
                weight = _dense_weight(base, torch.float32)
                if not getattr(child, "merged", False):
                    for adapter in child.active_adapters:
                        if adapter in child.lora_A:
                            weight = weight + child.get_delta_weight(adapter).to(torch.float32)
                merged += 1
                out_dtype = torch.float32
            elif type(child).__name__ == "Linear4bit":  # a bitsandbytes base layer without adapter
                base, weight = child, _dense_weight(child, torch.float32)
                dequantized += 1
                out_dtype = dtype
            else:
                continue
            dense = torch.nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                                    device=weight.device, dtype=out_dtype)
            with torch.no_grad():
                dense.weight.copy_(weight.to(out_dtype))
                if base.bias is not None:
                    dense.bias.copy_(base.bias.data.to(out_dtype))
            dense.requires_grad_(False)
            setattr(parent, child_name, dense)
    if merged or dequantized:
        logger.info("merge_for_save: %d LoRA layers merged, %d 4-bit layers dequantized", merged, dequantized)
    return model


def set_training_dtypes(model: torch.nn.Module, frozen_dtype: torch.dtype | None = None) -> dict[str, int]:
    """Store each parameter in the dtype its role needs for training; run after `apply_llm_training`.

    * Trainable parameters become fp32: they are AdamW's master weights. At the paper's learning rate (1e-5)
      an update is far below bf16's resolution (2**-8 relative), so bf16 or fp16 master weights would lose it.
      This also covers a base model that ``from_pretrained`` loaded in its checkpoint's dtype (transformers 5
      loads ``facebook/opt-2.7b`` in fp16): trained in full, its weights are upcast here.
    * Frozen floating-point parameters (the vision tower, a frozen LLM, LoRA's base weights, the embeddings
      and norms beside QLoRA's 4-bit layers) become ``frozen_dtype``: they never change, so they need no
      master copy. With bf16 this halves their memory and removes the per-step cast that autocast would
      otherwise make of every fp32 weight; the matmuls see the same bf16 operands either way. None = fp32.
    * Quantized (integer) weights and buffers are left as they are.

    The step then runs under ``torch.autocast(dtype=frozen_dtype)`` (`ifas_model.training.Trainer`).

    Returns:
        Numbers of parameter elements now in fp32 (trainable) and in ``frozen_dtype`` (frozen).
    """
    import torch

    frozen_dtype = frozen_dtype or torch.float32
    counts = {"trainable_fp32": 0, "frozen": 0}
    for param in model.parameters():  # tied weights are yielded once
        if not param.is_floating_point():
            continue
        target = torch.float32 if param.requires_grad else frozen_dtype
        if param.dtype != target:
            param.data = param.data.to(target)
        counts["trainable_fp32" if param.requires_grad else "frozen"] += param.numel()
    return counts
