"""The I-FAS model: frozen CLIP vision tower -> Globally Aware Connector -> OPT, as a Hugging Face model.

The forward pass reads like BLIP-2's, in three steps:

1. **vision**: the frozen `CLIPVisionModel` runs with ``output_hidden_states``; the CLS token of each of its L
   layers (the embedding output is excluded) forms G_V, the patch tokens of `vision_feature_layer` form X_V.
2. **connector**: the GAC (`GloballyAwareConnector`, eq. 2) turns them into M + L tokens of width D, and
   `language_projection` maps those to the LLM's embedding width.
3. **language model**: the M + L visual tokens are **prepended** to the embedded text (no placeholder tokens
   in `input_ids`), the attention mask is extended by M + L ones, and the causal LM runs on the whole
   sequence. The returned logits are cut back to the text positions, aligned with `input_ids` and `labels`,
   and the Lopsided LM loss (eq. 4) is computed right there. In training mode with labels (the trainer's
   step) the LM head runs only at the positions that predict a labelled token and no logits are returned
   (`forward`'s ``return_logits``), which gives the same loss without building (B, T, V) logits.

`score` reads P(real) = P(" Yes") at the answer position from one forward pass; `generate` returns the answer
tokens. Importing this module registers the model with `AutoConfig` / `AutoModel` (model_type ``"ifas"``), so
``AutoModel.from_pretrained(dir)`` works without ``trust_remote_code``.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    CLIPVisionModel,
    GenerationMixin,
    PreTrainedModel,
)
from transformers.utils import ModelOutput

from .configuration import GACConfig, IFASConfig, split_overrides
from .connector import GloballyAwareConnector, init_connector_module
from .loss import IGNORE_INDEX, lopsided_lm_loss, lopsided_token_loss

logger = logging.getLogger(__name__)

SCORE_NORMALIZATIONS = ("vocab", "yes_no")


def p_real_from_logits(logits: torch.Tensor, yes_id: int, no_id: int, normalize: str = "vocab") -> torch.Tensor:
    """P(real) from next-token logits at the answer position, (B, V) -> (B,) float32.

    ``vocab``: P(" Yes") over the full vocabulary (the paper's score); ``yes_no``: P(" Yes") / (P(" Yes") +
    P(" No")). Used by `IFASForConditionalGeneration.score` (which `ifas_model.inference.explain_images` also calls).
    """
    if normalize not in SCORE_NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(SCORE_NORMALIZATIONS)}, got {normalize!r}")
    probs = logits.float().softmax(dim=-1)  # (B, V)
    if normalize == "yes_no":
        return probs[:, yes_id] / (probs[:, yes_id] + probs[:, no_id]).clamp_min(torch.finfo(torch.float32).tiny)
    return probs[:, yes_id]
"""How `score` turns the answer-position logits into P(real); see `IFASForConditionalGeneration.score`."""

_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")


@dataclass
class IFASOutput(ModelOutput):
    """Output of `IFASForConditionalGeneration.forward`.

    Attributes:
        loss: the training loss (Lopsided LM loss, or the plain LM loss), when `labels` are given.
        logits: (B, T, V) next-token logits at the **text** positions, aligned with `input_ids`.
        loss_judgment: mean cross entropy over the judgment tokens (for logging).
        loss_interpretation: mean cross entropy over the interpretation tokens (for logging).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    loss_judgment: torch.Tensor | None = None
    loss_interpretation: torch.Tensor | None = None


class IFASPreTrainedModel(PreTrainedModel):
    """Weight init and HF plumbing shared by the I-FAS models."""

    config_class = IFASConfig
    config: IFASConfig
    base_model_prefix = "ifas"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["CLIPEncoderLayer", "OPTDecoderLayer", "GACBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Init of the connector and the language projection (vision tower and LLM init themselves)."""
        # the learnable queries keep the connector config's own range, as in GloballyAwareConnector itself
        std = module.config.initializer_range if isinstance(module, GloballyAwareConnector) else \
            self.config.initializer_range
        init_connector_module(module, std)


class IFASForConditionalGeneration(IFASPreTrainedModel, GenerationMixin):
    """I-FAS (AAAI 2025): CLIP ViT vision tower, Globally Aware Connector, OPT language model.

    The vision tower is frozen at construction (``requires_grad=False``) and kept in eval mode by `train`;
    what else trains is set by `ifas_model.adapters.apply_llm_training` (the trainer calls it).
    """

    def __init__(self, config: IFASConfig) -> None:
        super().__init__(config)
        self.vision_model = CLIPVisionModel._from_config(config.vision_config)
        self.connector = GloballyAwareConnector(config.connector_config)
        self.language_projection = nn.Linear(config.connector_config.hidden_size, config.text_embed_dim)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()
        self.vision_model.requires_grad_(False)

    # --- HF plumbing -------------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        """The LLM's token embedding."""
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Replace the LLM's token embedding."""
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        """The LLM's output head."""
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        """Replace the LLM's output head."""
        self.language_model.set_output_embeddings(new_embeddings)

    def train(self, mode: bool = True) -> IFASForConditionalGeneration:
        """Set train/eval mode; a frozen vision tower always stays in eval mode."""
        super().train(mode)
        if not self.vision_trainable:
            self.vision_model.eval()
        return self

    @property
    def vision_trainable(self) -> bool:
        """Whether any vision parameter requires a gradient (never, unless a user unfreezes it)."""
        return any(p.requires_grad for p in self.vision_model.parameters())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.from_pretrained`, refusing a checkpoint of another architecture by name.

        Without ``dtype`` (or ``torch_dtype``) the model loads in float32, whatever dtype ``config.json``
        records: a GPU run of ``ifas-train`` saves its frozen vision tower in bf16 and its trained weights in
        fp32, and transformers 5 would otherwise load everything in the recorded (first parameter's) bf16,
        rounding the trained weights. Pass ``dtype=torch.bfloat16`` for bf16 inference on a GPU (as
        ``ifas-eval --dtype auto`` does) or ``dtype="auto"`` for the recorded dtype.

        Weights load from safetensors only (``use_safetensors=True`` unless the caller passes ``False`` on
        purpose, e.g. to convert a trusted ``pytorch_model.bin`` once), and nothing shipped with the checkpoint
        is run: a local folder with an ``auto_map`` or ``*.py`` files is refused (`refuse_remote_code`) and
        ``trust_remote_code=False`` is passed.

        Raises:
            FileNotFoundError: ``checkpoint folder not found: PATH`` for a path that looks local (absolute,
                ``./``, ``~``, or an existing parent folder) and does not exist.
            RemoteCodeRefused: the folder ships Python code or an ``auto_map``.
            SafetensorsRequired: the local folder has only ``pytorch_model.bin`` (or no weights); says how to
                convert.
            WeightsUnreadable: a ``model*.safetensors`` file is cut short or damaged (a full disk while it was
                written, a partial copy): one line naming the file; an ``OSError`` and a ``ValueError``.
            OSError: the checkpoint cannot be read (message ``checkpoint 'ID': ...``).
            ValueError: the folder or Hub id holds another model_type (e.g. "clip", "blip-2").
        """
        from ._loading import (
            WEIGHTS_HINT,
            WeightsUnreadable,
            check_local,
            check_local_weights,
            loading,
            no_remote_code,
            one_line,
            refuse_remote_code,
            require_local_safetensors,
        )

        check_local(pretrained_model_name_or_path, "checkpoint folder")
        kwargs = no_remote_code(kwargs)
        refuse_remote_code(pretrained_model_name_or_path, "checkpoint")
        if kwargs.get("config") is None:
            hub = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
            with loading("checkpoint", pretrained_model_name_or_path):
                config_dict, _ = IFASConfig.get_config_dict(pretrained_model_name_or_path, **hub)
            found = config_dict.get("model_type")
            if found is None:
                raise ValueError(f"{pretrained_model_name_or_path} is not a model checkpoint (no config.json with "
                                 "a model_type); an I-FAS checkpoint is the final/ folder of an ifas-train run")
            if found != IFASConfig.model_type:
                raise ValueError(
                    f"{pretrained_model_name_or_path} holds a checkpoint of model_type {found!r}, not an I-FAS "
                    "('ifas') checkpoint. To start I-FAS from a CLIP vision tower and an OPT model, use "
                    "IFASForConditionalGeneration.from_pretrained_parts(vision=..., text=...)."
                )
        if kwargs.get("use_safetensors") is not False:
            kwargs["use_safetensors"] = True
            require_local_safetensors(pretrained_model_name_or_path, "checkpoint", "IFASForConditionalGeneration")
            check_local_weights(pretrained_model_name_or_path, "checkpoint")
        if kwargs.get("dtype") is None and kwargs.get("torch_dtype") is None:
            kwargs["dtype"] = torch.float32
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except Exception as err:
            if type(err).__name__ != "SafetensorError":  # transformers' own errors are OSError/ValueError already
                raise
            raise WeightsUnreadable(f"checkpoint {str(pretrained_model_name_or_path)!r}: its safetensors weights "
                                    f"cannot be read ({one_line(err)}); {WEIGHTS_HINT}") from err
        model.vision_model.requires_grad_(False)
        return model

    @classmethod
    def from_pretrained_parts(
        cls,
        vision: str | os.PathLike = "openai/clip-vit-large-patch14",
        text: str | os.PathLike = "facebook/opt-2.7b",
        tokenizer: str | os.PathLike | None = None,
        dtype: torch.dtype | None = None,
        **overrides: Any,
    ) -> IFASForConditionalGeneration:
        """Assemble I-FAS from a pretrained CLIP vision tower and a pretrained causal LM, with a fresh GAC.

        Args:
            vision: Hub id or local path of a CLIP checkpoint (a full `CLIPModel` or a `CLIPVisionModel`).
            text: Hub id or local path of the language model (OPT; any causal LM loads).
            tokenizer: where the tokenizer lives, to read the judgment token ids; defaults to `text`.
            dtype: dtype to load the parts in and cast the new connector to (e.g. torch.bfloat16).
            **overrides: connector settings (`num_queries`, `depth`, `hidden_size`, `use_global_tokens`, ...) and
                model settings (`lopsided_alpha`, `loss_type`, `llm_training`, `lora_r`, ...).

        Returns:
            The model in eval mode, vision tower frozen, LLM weights as loaded (nothing else frozen yet).

        Weights: a local part folder must hold safetensors (``model.safetensors``); one with only
        ``pytorch_model.bin`` is refused with how to convert it. A Hub id is loaded as transformers decides: the
        repository's safetensors when it has them, else its ``pytorch_model.bin`` through torch's
        ``weights_only`` unpickler (torch >= 2.6, which transformers requires for it), see docs/model.md. No
        part's own Python code is ever run (``trust_remote_code=False``; a folder with an ``auto_map`` or
        ``*.py`` files is refused).

        Raises:
            FileNotFoundError: ``vision model folder not found: PATH`` (or language model, tokenizer) for a
                path that looks local and does not exist.
            SafetensorsRequired: a local part folder without safetensors weights (names the part).
            WeightsUnreadable: a local part's ``model*.safetensors`` is cut short or damaged (names the file).
            RemoteCodeRefused: a part ships Python code or asks for it (names the part).
            OSError: a part cannot be loaded; the message names it: ``vision model 'ID': ...``.
        """
        from transformers import AutoTokenizer

        from ._loading import (
            check_local,
            check_local_weights,
            loading,
            note_hub_weights,
            refuse_remote_code,
            require_local_safetensors,
        )
        from .processing import judgment_token_ids_for

        tokenizer = tokenizer if tokenizer is not None else text
        parts = (("vision model", vision), ("language model", text), ("tokenizer", tokenizer))
        for what, name in parts:
            check_local(name, f"{what} folder")
        for what, name in parts:
            refuse_remote_code(name, what)
        # a local folder: safetensors or a one-line refusal; a Hub id: transformers' choice (see docs/model.md)
        local_vision = require_local_safetensors(vision, "vision model", "CLIPVisionModel")
        local_text = require_local_safetensors(text, "language model", "AutoModelForCausalLM")
        check_local_weights(vision, "vision model")  # a weights file cut short: one line naming it
        check_local_weights(text, "language model")
        connector_kw, top_kw = split_overrides(overrides)
        load_kw: dict[str, Any] = {"trust_remote_code": False}
        if dtype is not None:
            load_kw["dtype"] = dtype
        with loading("vision model", vision):
            vision_model = CLIPVisionModel.from_pretrained(vision, **load_kw,
                                                           **({"use_safetensors": True} if local_vision else {}))
        with loading("language model", text):
            language_model = AutoModelForCausalLM.from_pretrained(text, **load_kw,
                                                                  **({"use_safetensors": True} if local_text else {}))
        for what, name, local in (("vision model", vision, local_vision), ("language model", text, local_text)):
            if not local:
                note_hub_weights(name, what)
        with loading("tokenizer", tokenizer):
            tok = AutoTokenizer.from_pretrained(tokenizer, trust_remote_code=False)
        ids = judgment_token_ids_for(tok)
        connector_defaults = {
            "hidden_size": vision_model.config.hidden_size,
            "num_attention_heads": vision_model.config.num_attention_heads,
        }
        config = IFASConfig(
            vision_config=vision_model.config.to_dict(),
            connector_config=GACConfig(**{**connector_defaults, **connector_kw}),
            text_config=language_model.config.to_dict(),
            yes_token_id=ids["Yes"],
            no_token_id=ids["No"],
            base_models=[str(vision), str(text)],
            **top_kw,
        )
        # Build the shell on the meta device (no 2.7 B random init), then drop the pretrained parts in.
        with torch.device("meta"):
            model = cls(config)
        model.vision_model = vision_model
        model.language_model = language_model
        device = next(language_model.parameters()).device
        model.connector.to_empty(device=device)
        model.language_projection.to_empty(device=device)
        model.connector.reset_parameters()
        with torch.no_grad():
            nn.init.trunc_normal_(model.language_projection.weight, std=config.initializer_range)
            nn.init.zeros_(model.language_projection.bias)
        if dtype is not None:
            model.connector.to(dtype)
            model.language_projection.to(dtype)
        model.vision_model.requires_grad_(False)
        logger.info("assembled I-FAS from vision=%s text=%s (%d visual tokens)", vision, text,
                    config.image_token_count)
        return model.eval()

    # --- step 1 + 2: image -> visual tokens ---------------------------------------------------------
    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Images -> the M + L visual tokens at the LLM's embedding width.

        Args:
            pixel_values: (B, 3, H, W) from `IFASProcessor`.

        Returns:
            (B, M + L, E) with E the LLM embedding width.
        """
        # step 1: the frozen vision tower; every layer's hidden state is kept for the layer-CLS tokens.
        pixel_values = pixel_values.to(device=self.vision_model.device, dtype=self.vision_model.dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.vision_trainable):
            vision_out = self.vision_model(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
        layers = vision_out.hidden_states[1:]  # L layers; hidden_states[0] is the embedding output (excluded)
        cls_tokens = torch.stack([h[:, 0] for h in layers], dim=1)  # G_V: (B, L, W)
        patch_features = vision_out.hidden_states[self.config.connector_config.vision_feature_layer][:, 1:]  # X_V: (B, N, W)

        # step 2: the Globally Aware Connector, then the projection to the LLM width.
        dtype = self.language_projection.weight.dtype
        x_t = self.connector(cls_tokens.to(dtype), patch_features.to(dtype))  # (B, M + L, D)
        return self.language_projection(x_t)  # (B, M + L, E)

    def _prepend_visual_tokens(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed the text, prepend the visual tokens, extend the mask: (B, K + T, E), (B, K + T)."""
        input_ids = input_ids.to(self.get_input_embeddings().weight.device)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = attention_mask.to(input_ids.device)
        visual = self.get_image_features(pixel_values)  # (B, K, E), K = M + L
        text = self.get_input_embeddings()(input_ids)  # (B, T, E)
        inputs_embeds = torch.cat([visual.to(device=text.device, dtype=text.dtype), text], dim=1)
        visual_mask = attention_mask.new_ones(visual.shape[:2])
        return inputs_embeds, torch.cat([visual_mask, attention_mask], dim=1)

    # --- step 3: the language model ------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        answer_segments: torch.Tensor | None = None,
        return_dict: bool = True,
        return_logits: bool | None = None,
        **kwargs: Any,
    ) -> IFASOutput | tuple:
        """Run vision, connector and LLM; with `labels`, also the loss of `config.loss_type`.

        Args:
            pixel_values: (B, 3, H, W) images.
            input_ids: (B, T) prompt (+ answer) tokens, no image placeholders.
            attention_mask: (B, T) 1 for real tokens; the visual tokens are always attended.
            labels: (B, T) answer token ids, -100 elsewhere (from `IFASProcessor` with judgments).
            answer_segments: (B, T) 0 / 1 judgment / 2 interpretation; needed for the lopsided loss.
            return_dict: return an `IFASOutput` (default) or a tuple.
            return_logits: whether to return the (B, T, V) logits. None (default) = yes, except in training
                mode with `labels`: then the LM head runs only where the next token has a label, the loss is
                the same (`lopsided_token_loss`), and ``logits`` is None. True forces the full logits (the
                reference path); extra `kwargs` for the language model also take it.

        Returns:
            `IFASOutput(loss, logits, loss_judgment, loss_interpretation)`; logits are (B, T, V) at the text
            positions, so ``logits[:, t]`` predicts ``input_ids[:, t + 1]`` (None on the fast training path).
        """
        if return_logits is None:
            return_logits = labels is None or not self.training
        inputs_embeds, full_mask = self._prepend_visual_tokens(pixel_values, input_ids, attention_mask)
        n_text = input_ids.shape[1]
        if labels is not None and not return_logits and not kwargs:
            return self._forward_labelled_only(inputs_embeds, full_mask, n_text, labels, answer_segments,
                                               return_dict)
        if "logits_to_keep" in inspect.signature(self.language_model.forward).parameters:
            kwargs.setdefault("logits_to_keep", n_text)  # the LM head skips the K visual positions
        outputs = self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=full_mask, use_cache=False, return_dict=True, **kwargs
        )
        logits = outputs.logits[:, -n_text:, :]  # (B, T, V): drop the K visual positions
        loss = loss_judgment = loss_interpretation = None
        if labels is not None:
            parts = lopsided_lm_loss(
                logits, labels, answer_segments, self.config.lopsided_alpha, self.config.loss_type
            )
            loss, loss_judgment, loss_interpretation = parts
        out = IFASOutput(loss=loss, logits=logits, loss_judgment=loss_judgment,
                         loss_interpretation=loss_interpretation)
        return out if return_dict else out.to_tuple()

    def _forward_labelled_only(
        self, inputs_embeds: torch.Tensor, full_mask: torch.Tensor, n_text: int, labels: torch.Tensor,
        answer_segments: torch.Tensor | None, return_dict: bool,
    ) -> IFASOutput | tuple:
        """The fast training path: decoder, then the LM head and the loss at the labelled positions only."""
        hidden = self.language_model.base_model(
            inputs_embeds=inputs_embeds, attention_mask=full_mask, use_cache=False, return_dict=True
        ).last_hidden_state[:, -n_text:]  # (B, T, H) at the text positions
        if labels.shape != hidden.shape[:2]:
            raise ValueError(f"labels {tuple(labels.shape)} and input_ids {tuple(hidden.shape[:2])} differ in shape")
        if answer_segments is not None and answer_segments.shape != labels.shape:
            raise ValueError(
                f"answer_segments {tuple(answer_segments.shape)} and labels {tuple(labels.shape)} differ in shape"
            )
        shift_labels = labels[:, 1:].to(hidden.device)  # position t predicts token t + 1
        keep = shift_labels != IGNORE_INDEX  # (B, T - 1)
        token_logits = self.get_output_embeddings()(hidden[:, :-1][keep])  # (N, V), N labelled tokens
        segments = None if answer_segments is None else answer_segments[:, 1:].to(hidden.device)[keep]
        loss, judgment, interpretation = lopsided_token_loss(
            token_logits, shift_labels[keep], segments, self.config.lopsided_alpha, self.config.loss_type
        )
        out = IFASOutput(loss=loss, logits=None, loss_judgment=judgment, loss_interpretation=interpretation)
        return out if return_dict else out.to_tuple()

    @staticmethod
    def answer_positions(attention_mask: torch.Tensor) -> torch.Tensor:
        """Index of the last attended token of each row (the answer position): (B,). Any padding side."""
        mask = attention_mask.long()
        last_from_end = torch.argmax(mask.flip(-1), dim=-1)  # 0 when the last position is attended
        return mask.shape[1] - 1 - last_from_end

    @torch.no_grad()
    def score(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        normalize: str = "vocab",
    ) -> torch.Tensor:
        """P(real) of each image from ONE forward pass, read at the answer position.

        The answer position is the last prompt token (the prompt-only processor call left-pads, so it is the
        last column; any padding side is handled). Its next-token distribution is a softmax over the full
        vocabulary, in float32.

        Args:
            pixel_values: (B, 3, H, W).
            input_ids: (B, T) prompt tokens (no answer).
            attention_mask: (B, T).
            normalize: "vocab" (default) = P(" Yes") over the full vocabulary, the paper's definition ("the
                probability assigned to the word Yes"); mass on other tokens lowers it, so it is the one to
                compare with the paper. "yes_no" = P(" Yes") / (P(" Yes") + P(" No")), a two-way probability
                that sums to 1 with P(fake); prefer it for a fixed 0.5 threshold on a lightly trained model.
                After training the two agree closely, since nearly all mass is on " Yes" / " No".

        Returns:
            (B,) float32 scores in [0, 1], on the model's device.
        """
        yes, no = self.config.yes_token_id, self.config.no_token_id
        if yes is None or no is None:
            raise ValueError("config.yes_token_id / no_token_id are not set; build the model with its processor")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs_embeds, full_mask = self._prepend_visual_tokens(pixel_values, input_ids, attention_mask)
        # The decoder alone, then the LM head on one position per row: (B, V), not (B, K + T, V).
        hidden = self.language_model.base_model(
            inputs_embeds=inputs_embeds, attention_mask=full_mask, use_cache=False, return_dict=True
        ).last_hidden_state  # (B, K + T, H)
        offset = inputs_embeds.shape[1] - input_ids.shape[1]
        pos = offset + self.answer_positions(attention_mask.to(hidden.device))
        answer_hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), pos]  # (B, H)
        # The one LM-head row per image in float32: bf16 logits of magnitude 10-30 are spaced 0.06-0.125
        # apart, which would quantise P(" Yes") and tie many scores; this costs one (B, H) x (H, V) matmul.
        head = self.get_output_embeddings()
        bias = head.bias.float() if getattr(head, "bias", None) is not None else None
        with torch.autocast(answer_hidden.device.type, enabled=False):  # ifas-train evaluates under autocast
            logits = torch.nn.functional.linear(answer_hidden.float(), head.weight.float(), bias)  # (B, V)
        return p_real_from_logits(logits, yes, no, normalize)  # (B,)

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **generate_kwargs: Any,
    ) -> Any:
        """Generate the answer after the prompt: returns only the new token ids (B, new_tokens).

        Greedy decoding of at most 40 new tokens unless `generate_kwargs` say otherwise; any
        `GenerationMixin.generate` argument passes through (``return_dict_in_generate=True`` returns the
        generate output object instead of the ids).
        """
        inputs_embeds, full_mask = self._prepend_visual_tokens(pixel_values, input_ids, attention_mask)
        text_config = self.config.text_config
        generate_kwargs.setdefault("max_new_tokens", 40)
        generate_kwargs.setdefault("do_sample", False)
        generate_kwargs.setdefault("eos_token_id", text_config.eos_token_id)
        generate_kwargs.setdefault("pad_token_id", text_config.pad_token_id)
        return self.language_model.generate(inputs_embeds=inputs_embeds, attention_mask=full_mask, **generate_kwargs)


AutoModel.register(IFASConfig, IFASForConditionalGeneration, exist_ok=True)
try:  # the image-text-to-text auto class, where this transformers version has it
    from transformers import AutoModelForImageTextToText

    AutoModelForImageTextToText.register(IFASConfig, IFASForConditionalGeneration, exist_ok=True)
except ImportError:  # pragma: no cover
    pass
