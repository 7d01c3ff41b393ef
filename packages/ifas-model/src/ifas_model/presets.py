"""Model presets: ``default`` = the paper's parts (CLIP ViT-L/14 + OPT-2.7B), ``tiny`` = random, offline.

``default`` assembles `openai/clip-vit-large-patch14` and `facebook/opt-2.7b` (the paper's parts, Hub ids) with a fresh GAC through
`IFASForConditionalGeneration.from_pretrained_parts` (Hub or local copies; nothing downloads on an offline
machine). ``tiny`` builds the same classes from small configs with random weights and a byte-level BPE
tokenizer trained in process, so tests, CI and the trainer's smoke runs need no download; its outputs are
noise, everything around them (shapes, loss, saving, scoring, generation) is the real path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from scf.schema import INTERPRETATION_PREFIX, QUESTION

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

    from .modeling import IFASForConditionalGeneration
    from .processing import IFASProcessor

logger = logging.getLogger(__name__)

DEFAULT_VISION = "openai/clip-vit-large-patch14"
"""CLIP ViT-L/14, 224 px: 24 layers, width 1024 (the paper's frozen vision encoder)."""
DEFAULT_TEXT = "facebook/opt-2.7b"
"""OPT-2.7B: 32 layers, width 2560, vocabulary 50272 (the paper's LLM)."""

# Text the tiny tokenizer is trained on: the prompt, the judgments with their leading space, the
# interpretation prefix and words of face / spoof captions, so that " Yes" and " No" become single tokens
# and captions take a few tokens each, as with OPT's BPE. (Kept here: ifas_model may not import scf.presets.)
_TINY_TOKENIZER_TEXT = (
    f"Question: {QUESTION} Answer: Yes. {INTERPRETATION_PREFIX}a man with a beard and glasses",
    f"Question: {QUESTION} Answer: No. {INTERPRETATION_PREFIX}a printed paper photo of a face",
    " Yes No Yes No Yes No Yes No",
    "a woman with long hair smiling in front of a wall wearing a shirt",
    "a picture of a face on a phone screen with a monitor display",
    "a man holding a tablet showing a video of a woman, a face on a laptop screen",
    "a poster of a face, a paper mask, a mannequin head, a doll, a plastic mask, a silicone mask, makeup",
    "the person is in a room, an office, outdoors, at night, in the dark",
)
TINY_VOCAB_SIZE = 384


@dataclass(frozen=True)
class ModelPreset:
    """A named way to obtain an I-FAS model and its processor."""

    name: str
    description: str
    vision: str | None = None
    """Hub id or path of the CLIP checkpoint (None: built from config)."""
    text: str | None = None
    """Hub id or path of the causal LM (None: built from config)."""
    connector: dict[str, Any] = field(default_factory=dict)
    """Connector settings of the preset (users may override them)."""


MODEL_PRESETS: dict[str, ModelPreset] = {
    "default": ModelPreset(
        "default", "CLIP ViT-L/14 + GAC (M=32, 1 block, width 1024) + OPT-2.7B, from the Hub or local copies",
        vision=DEFAULT_VISION, text=DEFAULT_TEXT,
    ),
    "tiny": ModelPreset(
        "tiny", "random tiny CLIP (3 layers, width 64) + GAC (M=4) + OPT (2 layers, width 32); offline, outputs are noise",
        connector={"num_queries": 4, "hidden_size": 48, "num_attention_heads": 4, "depth": 1, "mlp_ratio": 2.0},
    ),
}


@lru_cache(maxsize=2)
def build_tiny_tokenizer(vocab_size: int = TINY_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer like OPT's (GPT-2 style, "Yes" != " Yes"), trained in process, deterministic.

    Special tokens as in OPT: ``</s>`` is BOS and EOS (prepended to every sequence), ``<pad>`` pads.
    Cached: callers get the same object, so do not mutate it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_TINY_TOKENIZER_TEXT) * 8, trainer=trainer)
    bos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def tiny_config(**overrides: Any) -> Any:
    """The `IFASConfig` of the ``tiny`` preset (vision 3 layers x 64, patch 16 at 224 px; OPT 2 layers x 32)."""
    from .configuration import GACConfig, IFASConfig, split_overrides
    from .processing import judgment_token_ids_for

    tokenizer = build_tiny_tokenizer()
    ids = judgment_token_ids_for(tokenizer)
    connector_kw, top_kw = split_overrides(overrides)
    return IFASConfig(
        vision_config={
            # width 64 rather than 32: a random frozen tower this wide keeps enough of the sample's spoof cues
            # (a linear probe on its features reaches AUC ~0.9 on held-out subjects, ~0.85 at width 32)
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
            "image_size": 224, "patch_size": 16, "projection_dim": 64,
        },
        connector_config=GACConfig(**{**MODEL_PRESETS["tiny"].connector, **connector_kw}),
        text_config={
            "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "vocab_size": len(tokenizer), "max_position_embeddings": 256, "word_embed_proj_dim": 32,
            "dropout": 0.0, "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        yes_token_id=ids["Yes"],
        no_token_id=ids["No"],
        **top_kw,
    )


def build_model(preset: str = "tiny", seed: int = 0, **overrides: Any) -> tuple[IFASForConditionalGeneration, IFASProcessor]:
    """Build a model and its processor from a preset.

    Args:
        preset: a key of `MODEL_PRESETS` ("tiny" or "default").
        seed: seed of the random init (the whole tiny model; the new GAC of "default").
        **overrides: connector settings (num_queries, depth, hidden_size, use_global_tokens, ...), model
            settings (lopsided_alpha, loss_type, llm_training, lora_r, ...), and ``vision_model`` /
            ``language_model``: Hub ids or local paths that replace the preset's parts (the "default" preset
            then loads those; with "tiny", both must be given and the tiny configs are not used).
            Unknown keys raise ValueError.

    Returns:
        (model in eval mode with its vision tower frozen, processor).

    Raises:
        ValueError: unknown preset name (the message lists the names) or unknown override.
    """
    import torch

    from .modeling import IFASForConditionalGeneration
    from .processing import IFASProcessor, build_image_processor

    if preset not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of: {', '.join(MODEL_PRESETS)}")
    spec = MODEL_PRESETS[preset]
    vision = overrides.pop("vision_model", None) or spec.vision
    text = overrides.pop("language_model", None) or spec.text
    if (vision is None) != (text is None):
        raise ValueError(
            f"preset {preset!r} builds its parts from config; to load pretrained parts give both vision_model "
            f"and language_model (got vision_model={vision!r}, language_model={text!r})"
        )
    torch.manual_seed(seed)
    if vision is None:
        config = tiny_config(**overrides)
        model = IFASForConditionalGeneration(config).eval()
        processor = IFASProcessor(build_image_processor(config.vision_config.image_size), build_tiny_tokenizer())
    else:
        connector = spec.connector if spec.vision is not None else {}
        model = IFASForConditionalGeneration.from_pretrained_parts(
            vision=vision, text=text, **{**connector, **overrides}
        )
        processor = IFASProcessor.from_pretrained_parts(vision=vision, text=text)
    logger.info("built model preset %r (%d visual tokens)", preset, model.config.image_token_count)
    return model, processor
