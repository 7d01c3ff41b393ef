"""The captioner's default (static-cache) decoding gives the greedy tokens of plain ``generate``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (48 + 8 * i, 40, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def tiny():
    from scf.presets import build_tiny_captioner

    return build_tiny_captioner(seed=3)


@pytest.mark.parametrize(("min_new", "max_new"), [(8, 30), (0, 12), (5, 5)])
def test_static_cache_ids_equal_plain_generate(tiny, min_new, max_new):
    import torch

    from scf.captioning.captioner import DecodingConfig, caption_stop_ids, generate_caption_ids

    model, processor = tiny
    decoding = DecodingConfig(min_new_tokens=min_new, max_new_tokens=max_new)
    images = _images(5)
    inputs = processor(images=images, text=[decoding.prompt_text] * len(images), return_tensors="pt")
    with torch.inference_mode():
        stop = caption_stop_ids(model, processor.tokenizer)  # "\n" (the model's end token) and </s>
        fast = generate_caption_ids(model, **inputs, decoding=decoding, stop_token_ids=stop)
        ref = generate_caption_ids(model, **inputs, decoding=decoding, fast=False, stop_token_ids=stop)
    assert fast.shape[0] == len(images) and 1 <= fast.shape[1] <= max_new
    assert torch.equal(fast, ref)


def test_captioner_default_is_the_fast_path_with_the_reference_captions(tiny):
    from scf.captioning.captioner import Blip2Captioner

    model, processor = tiny
    fast = Blip2Captioner(model, processor, "tiny", batch_size=3)
    ref = Blip2Captioner(model, processor, "tiny", batch_size=3, fast=False)
    assert fast.fast and fast.describe()["decoding_path"] == "static-cache"
    assert ref.describe()["decoding_path"] == "generate"
    images = _images(7, seed=1)  # 3 + 3 + a short last batch of 1
    captions = fast.caption(images)
    assert len(captions) == 7 and all(isinstance(c, str) for c in captions)
    assert captions == ref.caption(images)


def test_bf16_model_gets_bf16_pixels_although_query_tokens_stay_fp32(monkeypatch):
    """As ``from_pretrained(dtype=bf16)`` leaves BLIP-2: ``query_tokens`` and the Q-Former in fp32 (review14 #8)."""
    import torch

    import scf.captioning.captioner as captioner_module
    from scf.captioning.captioner import Blip2Captioner
    from scf.presets import build_tiny_captioner

    model, processor = build_tiny_captioner(seed=0)
    model.to(torch.bfloat16)
    for name in model._keep_in_fp32_modules:
        part = getattr(model, name)
        if isinstance(part, torch.nn.Module):
            part.float()
        else:
            part.data = part.data.float()
    assert next(model.parameters()).dtype == torch.float32  # query_tokens, the first parameter
    seen = []
    original = captioner_module.generate_caption_ids

    def spy(model, pixel_values, *args, **kwargs):
        seen.append(pixel_values.dtype)
        return original(model, pixel_values, *args, **kwargs)

    monkeypatch.setattr(captioner_module, "generate_caption_ids", spy)
    captioner = Blip2Captioner(model, processor, "tiny", batch_size=2)
    assert captioner.describe()["dtype"] == "bfloat16"
    captions = captioner.caption(_images(2))
    assert seen == [torch.bfloat16] and len(captions) == 2
