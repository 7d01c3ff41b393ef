"""FLOP counts per sample of the I-FAS model, the BLIP-2 captioner and the benchmark anchor, from their configs.

Conventions (the usual ones): one multiply-add counts 2 FLOPs; only matrix products are counted (layer norms,
softmax, activations, embeddings lookups and the optimizer are left out, a few percent at these sizes).

* A linear layer of ``n_in x n_out`` applied to ``t`` tokens: ``2 t n_in n_out`` forward.
* Attention scores and the weighted sum over ``n`` queries and ``m`` keys at width ``d``: ``4 n m d`` forward
  (two products); causal self-attention counts half of that, ``2 n^2 d`` (the masked half is skippable and
  SDPA's fused kernels skip it).
* Backward: the gradient with respect to a layer's input costs its forward again; the gradient with respect to
  its weights costs the forward once more, and only when the weights train. So a frozen layer that gradients
  flow through costs 2x its forward, a trained one 3x, and attention products (no weights) 3x. A frozen part
  that no gradient flows through (the vision tower before a trained connector) costs its forward alone.
* The LM head (``E x V``) is counted only at the positions where a path computes it: every position for the
  anchor ("the usual way": full logits, then the loss), the answer position for I-FAS scoring, the labelled
  positions for I-FAS training (every text position, not the visual ones, on its reference path,
  ``return_logits=True``), and one position per step in decoding.

Checked against the maintainers' hand counts (docs/benchmarks.md): CLIP ViT-L/14 forward ~162 GFLOP per
image, OPT-2.7B ~5.3 GFLOP per token with its LM head, the anchor's frozen-LLM training sample (72 LLM
tokens) ~0.96 TFLOP, its scoring pass ~0.4 TFLOP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

TRAIN_FACTORS = {"frozen_no_grad": 1, "frozen": 2, "trained": 3}
"""Forward + backward cost, in forwards, of a part: no gradient through it / gradient through it / it trains."""


def _get(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    if default is not None:
        return default
    raise AttributeError(f"config {type(config).__name__} has none of {names}")


@dataclass(frozen=True)
class PartFlops:
    """Forward FLOPs of one part, split into weight products (linear) and attention products."""

    linear: float
    attention: float

    @property
    def forward(self) -> float:
        """All forward FLOPs."""
        return self.linear + self.attention

    def train(self, mode: str) -> float:
        """Forward + backward FLOPs: mode "frozen_no_grad", "frozen" (input grads) or "trained"."""
        factor = TRAIN_FACTORS[mode]
        if mode == "frozen_no_grad":
            return self.forward
        return factor * self.linear + 3 * self.attention  # attention has no weights: fwd + 2 products back


def vit_tokens(config: Any) -> int:
    """Tokens of a ViT: patches + CLS (257 for 224 px at patch 14)."""
    return (config.image_size // config.patch_size) ** 2 + 1


def vit_forward(config: Any) -> PartFlops:
    """One image through a ViT encoder (CLIP vision or BLIP-2's EVA ViT): patch embedding + L blocks."""
    n = vit_tokens(config)
    d, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    channels = getattr(config, "num_channels", 3)
    patch = 2 * (n - 1) * channels * config.patch_size**2 * d
    per_layer = 2 * n * (4 * d * d + 2 * d * f)  # q, k, v, o + two MLP matrices
    attention = layers * 4 * n * n * d
    return PartFlops(linear=patch + layers * per_layer, attention=attention)


def qformer_forward(config: Any, num_queries: int, encoder_tokens: int) -> PartFlops:
    """The BLIP-2 Q-Former on the query tokens only (no text): self-attention, cross-attention every
    ``cross_attention_frequency`` layers into ``encoder_tokens`` vision tokens, MLP."""
    h, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    e = _get(config, "encoder_hidden_size", default=h)
    freq = _get(config, "cross_attention_frequency", default=2)
    q = num_queries
    linear = attention = 0.0
    for layer in range(layers):
        linear += 2 * q * (4 * h * h + 2 * h * f)
        attention += 4 * q * q * h
        if layer % freq == 0:
            linear += 2 * q * 2 * h * h + 2 * encoder_tokens * 2 * e * h  # q, o on queries; k, v on the image
            attention += 4 * q * encoder_tokens * h
    return PartFlops(linear=linear, attention=attention)


def gac_forward(config: Any, patch_tokens: int) -> PartFlops:
    """The Globally Aware Connector (eq. 2) on one image: projections of G_V (and X_V), then its blocks."""
    d, w = config.hidden_size, config.vision_hidden_size
    q = config.num_queries + config.num_global_tokens
    hidden = int(round(d * config.mlp_ratio))
    linear = 2 * config.num_global_tokens * w * d if config.use_global_tokens else 0.0
    if w != d:
        linear += 2 * patch_tokens * w * d
    attention = 0.0
    for _ in range(config.depth):
        linear += 2 * q * 4 * d * d  # self-attention q, k, v, o
        linear += 2 * q * 2 * d * d + 2 * patch_tokens * 2 * d * d  # cross-attention q, o / k, v on X_V
        linear += 2 * q * 2 * d * hidden  # MLP
        attention += 4 * q * q * d + 4 * q * patch_tokens * d
    return PartFlops(linear=linear, attention=attention)


def decoder_forward(config: Any, tokens: int, lm_head_tokens: int) -> PartFlops:
    """A causal decoder (OPT) over a sequence of ``tokens``, its LM head applied at ``lm_head_tokens`` positions."""
    h, layers = config.hidden_size, config.num_hidden_layers
    f = _get(config, "ffn_dim", "intermediate_size")
    e = _get(config, "word_embed_proj_dim", default=h)
    linear = 2 * tokens * layers * (4 * h * h + 2 * h * f)
    if e != h:
        linear += 2 * tokens * 2 * e * h  # project_in, project_out
    linear += 2 * lm_head_tokens * e * config.vocab_size
    return PartFlops(linear=linear, attention=layers * 2 * tokens * tokens * h)


def decoder_lm_head(config: Any, tokens: int) -> float:
    """LM head FLOPs at ``tokens`` positions."""
    e = _get(config, "word_embed_proj_dim", default=config.hidden_size)
    return 2 * tokens * e * config.vocab_size


def lora_forward(config: Any, tokens: int, rank: int, targets: int = 4) -> float:
    """LoRA adapters (A: h x r, B: r x h) on ``targets`` square projections per layer, over ``tokens``."""
    return 2 * tokens * config.num_hidden_layers * targets * 2 * config.hidden_size * rank


def decode_steps(config: Any, prompt_tokens: int, new_tokens: int) -> float:
    """Forward FLOPs of greedy decoding with a KV cache: a prefill of ``prompt_tokens`` (LM head on its last
    position), then ``new_tokens - 1`` single-token steps (each attends to the whole cache)."""
    first = decoder_forward(config, prompt_tokens, 1).forward
    per_token = decoder_forward(config, 1, 1).linear
    h, layers = config.hidden_size, config.num_hidden_layers
    rest = 0.0
    for step in range(1, new_tokens):
        context = prompt_tokens + step
        rest += per_token + layers * 4 * context * h
    return first + rest


# --- per-sample totals ---------------------------------------------------------------------------------

def _with_total(parts: dict[str, float]) -> dict[str, float]:
    """``parts`` plus their sum under ``"total"``."""
    parts["total"] = sum(parts.values())
    return parts


def _qformer_connector(vision: Any, qformer: Any, text: Any, num_queries: int, *, trained: bool) -> float:
    """A BLIP-2 connector: the Q-Former over the vision tokens plus the projection of its queries to the LLM
    width; forward only, or forward + backward of a trained connector."""
    projection = 2 * num_queries * qformer.hidden_size * _get(text, "word_embed_proj_dim", default=text.hidden_size)
    q = qformer_forward(qformer, num_queries, vit_tokens(vision))
    return q.train("trained") + 3 * projection if trained else q.forward + projection


def ifas_train_sample(config: Any, text_tokens: int, labelled_tokens: int, llm: str, lora_rank: int = 16) -> dict[str, float]:
    """FLOPs of one I-FAS training sample (forward + backward) on the fast path.

    Args:
        config: an `IFASConfig`.
        text_tokens: T, prompt + answer tokens; the LLM sees M + L + T.
        labelled_tokens: tokens with a label (the LM head runs there only).
        llm: "frozen", "lora", "qlora" or "full".
        lora_rank: LoRA r for "lora" / "qlora".
    """
    v, c, t = config.vision_config, config.connector_config, config.text_config
    k = config.image_token_count
    vision = vit_forward(v)
    gac = gac_forward(c, vit_tokens(v) - 1)
    proj = 2 * k * c.hidden_size * config.text_embed_dim
    dec = decoder_forward(t, k + text_tokens, 0)
    head = decoder_lm_head(t, labelled_tokens)
    llm_mode = "trained" if llm == "full" else "frozen"
    out = {
        "vision": vision.train("frozen_no_grad"),
        "connector": gac.train("trained") + 3 * proj,
        "llm": dec.train(llm_mode) + TRAIN_FACTORS[llm_mode] * head,
    }
    if llm in ("lora", "qlora"):
        out["lora"] = 3 * lora_forward(t, k + text_tokens, lora_rank)
    return _with_total(out)


def ifas_train_reference_sample(config: Any, text_tokens: int, labelled_tokens: int) -> dict[str, float]:
    """FLOPs of one frozen-LLM I-FAS training sample on the reference path (``return_logits=True``).

    It is the fast path's sample plus the LM head at the text positions without a label: the reference path
    computes logits at all T text positions (``forward`` passes ``logits_to_keep=T``, so the M + L visual
    positions are skipped), the fast path at the ``labelled_tokens`` only. The head is frozen and gradients
    flow through it, so the extra positions cost 2x their forward.
    """
    out = ifas_train_sample(config, text_tokens, labelled_tokens, "frozen")
    extra = TRAIN_FACTORS["frozen"] * decoder_lm_head(config.text_config, text_tokens - labelled_tokens)
    out["llm"] += extra
    out["total"] += extra
    return out


def ifas_score_sample(config: Any, prompt_tokens: int) -> dict[str, float]:
    """FLOPs of scoring one image (one forward pass, LM head at the answer position only)."""
    v, c, t = config.vision_config, config.connector_config, config.text_config
    k = config.image_token_count
    return _with_total({
        "vision": vit_forward(v).forward,
        "connector": gac_forward(c, vit_tokens(v) - 1).forward + 2 * k * c.hidden_size * config.text_embed_dim,
        "llm": decoder_forward(t, k + prompt_tokens, 1).forward,
    })


def blip2_caption_sample(vision: Any, qformer: Any, text: Any, num_queries: int, prompt_tokens: int,
                         new_tokens: int) -> dict[str, float]:
    """FLOPs of captioning one image with a BLIP-2 stack (vision, Q-Former, projection, greedy decoding).

    ``prompt_tokens`` excludes the ``num_queries`` image tokens, which the LLM also sees.
    """
    return _with_total({
        "vision": vit_forward(vision).forward,
        "connector": _qformer_connector(vision, qformer, text, num_queries, trained=False),
        "llm": decode_steps(text, num_queries + prompt_tokens, new_tokens),
    })


def anchor_train_sample(vision: Any, qformer: Any, text: Any, num_queries: int, text_tokens: int) -> dict[str, float]:
    """FLOPs of one anchor training sample: vision and LLM frozen, Q-Former + projection trained, full logits."""
    seq = num_queries + text_tokens
    return _with_total({
        "vision": vit_forward(vision).forward,
        "connector": _qformer_connector(vision, qformer, text, num_queries, trained=True),
        "llm": decoder_forward(text, seq, seq).train("frozen"),
    })


def anchor_score_sample(vision: Any, qformer: Any, text: Any, num_queries: int, prompt_tokens: int) -> dict[str, float]:
    """FLOPs of the anchor's scoring pass: one forward with logits at every position (the usual way)."""
    seq = num_queries + prompt_tokens
    return _with_total({
        "vision": vit_forward(vision).forward,
        "connector": _qformer_connector(vision, qformer, text, num_queries, trained=False),
        "llm": decoder_forward(text, seq, seq).forward,
    })
