"""Captioner presets: the real BLIP-2 checkpoint, and a tiny random BLIP-2 of the same classes for offline use.

``default`` names ``Salesforce/blip2-opt-2.7b`` (the paper, Section 4.1: BLIP-2 as the captioner), loaded with ``from_pretrained`` from the Hub or a
local path. ``tiny`` builds `Blip2ForConditionalGeneration` from a small config with random weights and a
small byte-level BPE tokenizer trained in process, so tests and the offline demo run with no download.
Captions of the tiny model are noise; everything around them (batching, files, resume) is the real path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        PreTrainedTokenizerFast,
    )

DEFAULT_CAPTIONER = "Salesforce/blip2-opt-2.7b"
"""The general captioner C_G of the paper (Li et al. 2023): BLIP-2 with OPT-2.7B."""

# Text the tiny tokenizer is trained on: words of face captions and of the spoof keyword dictionary,
# so that the tiny vocabulary tokenises real captions into a few tokens each, as OPT's BPE does.
_TINY_TOKENIZER_TEXT = (
    "a photo of a man with a beard and glasses wearing a shirt",
    "a woman with long hair smiling in front of a wall",
    "a person holding a printed paper photo of a face",
    "a picture of a face on a phone screen with a monitor display",
    "a man holding a tablet showing a video of a woman",
    "a face on a laptop screen, a poster of a face, a paper mask",
    "a mannequin head, a doll, a plastic mask, a silicone mask, makeup",
    "the person is in a room, an office, outdoors, at night, in the dark",
    "Is this photo of a real person? Yes. No. This is",
)
TINY_VOCAB_SIZE = 512


@dataclass(frozen=True)
class CaptionerPreset:
    """A named way to obtain a BLIP-2 captioner."""

    name: str
    checkpoint: str | None
    """Hub id or local path given to ``from_pretrained``; None for presets built from config."""
    description: str


CAPTIONER_PRESETS: dict[str, CaptionerPreset] = {
    "default": CaptionerPreset("default", DEFAULT_CAPTIONER, "BLIP-2 OPT-2.7B from the Hub or a local copy"),
    "tiny": CaptionerPreset("tiny", None, "tiny random BLIP-2 built from config (offline; captions are noise)"),
}


def build_tiny_tokenizer(vocab_size: int = TINY_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer like OPT's (GPT-2 style, so "Yes" and " Yes" differ), trained in process.

    Deterministic: the same text and vocabulary size give the same merges on every machine.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<pad>", "</s>", "<unk>", "<image>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_TINY_TOKENIZER_TEXT) * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    # OPT prepends </s> as BOS to every sequence; the tiny tokenizer does the same through its template.
    from tokenizers import processors

    bos_id = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", pair="</s> $A </s> $B",
                                                       special_tokens=[("</s>", bos_id)])
    fast._tokenizer.post_processor = tok.post_processor
    return fast


def tiny_blip2_config(vocab_size: int = TINY_VOCAB_SIZE, image_size: int = 224, image_token_index: int = 3,
                      eos_token_id: int = 1) -> Blip2Config:
    """A `Blip2Config` with the real architecture's shape at toy width (vision 32, Q-Former 32, OPT 32).

    ``eos_token_id`` is the language model's ``text_config.eos_token_id``, the token ``generate`` stops on
    (`build_tiny_captioner` passes the id of ``"\n"``, as in ``Salesforce/blip2-opt-2.7b``).
    """
    from transformers import Blip2Config

    return Blip2Config(
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "image_size": image_size, "patch_size": 16,
        },
        qformer_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "encoder_hidden_size": 32, "cross_attention_frequency": 2, "vocab_size": 99,
        },
        text_config={
            "model_type": "opt", "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "vocab_size": vocab_size, "max_position_embeddings": 128,
            "word_embed_proj_dim": 32, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": eos_token_id,
        },
        num_query_tokens=8,
        image_token_index=image_token_index,
    )


def build_tiny_captioner(seed: int = 0) -> tuple[Blip2ForConditionalGeneration, Blip2Processor]:
    """A tiny random `Blip2ForConditionalGeneration` and its `Blip2Processor`, built with no download.

    Like ``Salesforce/blip2-opt-2.7b``, the model stops generating on ``"\n"`` (``text_config.eos_token_id``,
    hence ``generation_config.eos_token_id``), which is not the tokenizer's ``eos_token`` ``</s>``: the
    BLIP-2-OPT checkpoints were trained by LAVIS (``lavis/models/blip2_models/blip2_opt.py``) with ``"\n"``
    appended to every caption, and HF's ``convert_blip_2_original_to_pytorch.py`` writes that id into the config.
    """
    import torch
    from transformers import Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessorPil

    tokenizer = build_tiny_tokenizer()
    image_token_index = tokenizer.convert_tokens_to_ids("<image>")
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    assert len(newline) == 1, "the byte-level tiny tokenizer encodes a newline as one token"
    config = tiny_blip2_config(vocab_size=len(tokenizer), image_token_index=image_token_index,
                               eos_token_id=newline[0])
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    # The PIL image processor by name: `BlipImageProcessor` is the torchvision one, and without torchvision
    # transformers substitutes this class with a warning on every start (same pixels either way here).
    image_processor = BlipImageProcessorPil(size={"height": 224, "width": 224}, do_convert_rgb=True)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    processor = Blip2Processor(image_processor, tokenizer, num_query_tokens=config.num_query_tokens)
    return model, processor
