"""Issue 8 fast paths of the I-FAS model equal their reference paths on CPU.

Training: in train mode with labels, `forward` runs the LM head only where a label is set (no logits); the
loss, its two parts and every gradient equal the reference path (``return_logits=True``, full logits).
Scoring: `score` reads one position's LM head; it equals the softmax of the full forward logits at the answer
position, in fp32 and, within bf16 tolerance, in bf16.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (80, 64, 3), dtype=np.uint8)) for _ in range(n)]


def _batch(processor, judgments, interpretations):
    return processor(_images(len(judgments)), judgments=judgments, interpretations=interpretations)


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    ("loss_type", "judgments", "interpretations"),
    [
        ("lopsided", ["Yes", "No", "Yes"], ["This is a man with glasses", "This is a printed paper photo", ""]),
        ("plain", ["Yes", "No"], ["This is a man with glasses", "This is a face on a phone screen"]),
        ("lopsided", ["Yes", "No"], ["", ""]),  # judgment-only batch (no SCF interpretations)
    ],
)
def test_training_fast_path_gives_the_reference_loss_and_gradients(loss_type, judgments, interpretations):
    import torch

    from ifas_model.presets import build_model

    model, processor = build_model("tiny", seed=1, loss_type=loss_type)
    batch = _batch(processor, judgments, interpretations)
    model.train()
    ref = model(**batch, return_logits=True)
    assert ref.logits is not None
    ref.loss.backward()
    ref_grads = _grads(model)
    model.zero_grad(set_to_none=True)

    fast = model(**batch)  # train mode + labels: the default is the fast path
    assert fast.logits is None
    fast.loss.backward()
    fast_grads = _grads(model)
    torch.testing.assert_close(fast.loss, ref.loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fast.loss_judgment, ref.loss_judgment, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fast.loss_interpretation, ref.loss_interpretation, rtol=1e-6, atol=1e-6)
    assert fast_grads.keys() == ref_grads.keys() and len(fast_grads) > 10
    for name, grad in ref_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_eval_mode_and_explicit_request_keep_the_logits():
    from ifas_model.presets import build_model

    model, processor = build_model("tiny")
    batch = _batch(processor, ["Yes"], ["This is a man"])
    b, t = batch["input_ids"].shape
    out = model.eval()(**batch)  # eval mode: logits as before
    assert out.logits.shape == (b, t, model.config.text_config.vocab_size)
    assert model.train()(**batch, return_logits=False).logits is None
    assert model(**batch, return_logits=True).logits.shape == (b, t, model.config.text_config.vocab_size)


def test_training_fast_path_rejects_misaligned_segments():
    from ifas_model.presets import build_model

    model, processor = build_model("tiny")
    batch = _batch(processor, ["Yes", "No"], ["This is a man", ""])
    batch["answer_segments"] = batch["answer_segments"][:, :-1]
    with pytest.raises(ValueError, match="answer_segments"):
        model.train()(**batch)


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_score_equals_the_full_forward_reference(dtype_name):
    import torch

    from ifas_model.presets import build_model

    dtype = getattr(torch, dtype_name)
    model, processor = build_model("tiny", seed=2)
    model = model.to(dtype).eval()
    inputs = processor(_images(4, seed=3))  # prompt only, left-padded
    with torch.no_grad():
        fast = model.score(**inputs)
        logits = model(**inputs, return_logits=True).logits  # (B, T, V)
    pos = model.answer_positions(inputs["attention_mask"])
    ref = logits[torch.arange(logits.shape[0]), pos].float().softmax(-1)[:, model.config.yes_token_id]
    if dtype == torch.float32:
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-7)
    else:  # bf16: the LM head on one row vs on all rows rounds differently
        torch.testing.assert_close(fast, ref, rtol=2e-2, atol=1e-4)
