"""Configuration of the I-FAS model: vision tower + Globally Aware Connector (GAC) + language model.

`IFASConfig` is a composite Hugging Face config in the shape of `Blip2Config`: three sub-configs
(`vision_config` a `CLIPVisionConfig`, `connector_config` a `GACConfig`, `text_config` an `OPTConfig`) plus
the few I-FAS settings (the Lopsided LM loss weight, the loss type, how the LLM is trained, the judgment token
ids). One constructor ties the dimensions together: the connector reads the vision width and layer count and
writes to the LLM's embedding width, so a user only ever sets the parts.

The classic ``__init__(**kwargs)`` style is used on purpose (not the dataclass fields of transformers >= 5.20)
so that the same file works on every transformers 5.x this project runs on.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import AutoConfig, CLIPVisionConfig, OPTConfig, PretrainedConfig

logger = logging.getLogger(__name__)

LOSS_TYPES = ("lopsided", "plain")
"""``lopsided``: the Lopsided LM loss of paper eq. 4. ``plain``: the ordinary LM loss (the paper's ablation)."""
LLM_TRAINING_MODES = ("full", "lora", "qlora", "frozen")
"""How the language model is trained; see `IFASConfig.llm_training` and `ifas_model.adapters`."""
DEFAULT_LOPSIDED_ALPHA = 0.7
"""alpha of paper eq. 4. The paper's Figure 5 ablates alpha without printing the best value in the text; a
public summary of the paper puts it near 0.7 (not verified against the figure). It is a config field:
set it explicitly when reproducing a specific figure."""


class GACConfig(PretrainedConfig):
    r"""Configuration of the Globally Aware Connector (paper eq. 2).

    Args:
        num_queries (`int`, defaults to 32): M, the number of learnable queries Q_P. 32 follows BLIP-2's
            Q-Former (the paper does not give M; with M = 32 and L = 24 layer CLS tokens of ViT-L the LLM sees 56 visual tokens).
        hidden_size (`int`, defaults to 1024): D, the connector width. 1024 = the ViT-L/14 width, so the patch
            features X_V enter without a projection; any other value adds a linear projection of X_V.
        num_attention_heads (`int`, defaults to 16): heads of the MSA and MCA (D / heads = 64, as in ViT-L).
        depth (`int`, defaults to 1): number of stacked GAC blocks. Eq. 2 describes exactly one block
            (MSA, MCA, MLP); more blocks stack the same equations.
        mlp_ratio (`float`, defaults to 4.0): MLP hidden width = mlp_ratio * D (the ViT convention).
        use_global_tokens (`bool`, defaults to True): True = GAC (the L layer-CLS tokens become the queries
            Q_V). False = the paper's "without GAC" ablation: Q_V is replaced by L more learnable queries, so the
            LLM still receives M + L visual tokens.
        vision_feature_layer (`int`, defaults to -1): which hidden state of the vision tower supplies the local
            features X_V (its patch tokens; the CLS token is not part of X_V). -1 = the last layer.
        layer_norm_eps (`float`, defaults to 1e-5): epsilon of every LayerNorm of the connector.
        attention_dropout (`float`, defaults to 0.0): dropout on attention weights (none: the paper names none).
        initializer_range (`float`, defaults to 0.02): std of the truncated-normal init of queries and linears.
        vision_hidden_size (`int`, defaults to 1024): width of the vision tower; set by `IFASConfig`.
        num_global_tokens (`int`, defaults to 24): L, the number of vision encoder layers; set by `IFASConfig`.
    """

    model_type = "ifas_gac"
    base_config_key = "connector_config"

    def __init__(
        self,
        num_queries: int = 32,
        hidden_size: int = 1024,
        num_attention_heads: int = 16,
        depth: int = 1,
        mlp_ratio: float = 4.0,
        use_global_tokens: bool = True,
        vision_feature_layer: int = -1,
        layer_norm_eps: float = 1e-5,
        attention_dropout: float = 0.0,
        initializer_range: float = 0.02,
        vision_hidden_size: int = 1024,
        num_global_tokens: int = 24,
        **kwargs: Any,
    ) -> None:
        self.num_queries = int(num_queries)
        self.hidden_size = int(hidden_size)
        self.num_attention_heads = int(num_attention_heads)
        self.depth = int(depth)
        self.mlp_ratio = float(mlp_ratio)
        self.use_global_tokens = bool(use_global_tokens)
        self.vision_feature_layer = int(vision_feature_layer)
        self.layer_norm_eps = float(layer_norm_eps)
        self.attention_dropout = float(attention_dropout)
        self.initializer_range = float(initializer_range)
        self.vision_hidden_size = int(vision_hidden_size)
        self.num_global_tokens = int(num_global_tokens)
        super().__init__(**kwargs)
        self.validate_connector()

    def validate_connector(self) -> None:
        """Raise ValueError naming the field when a value is out of range."""
        for name in ("num_queries", "hidden_size", "num_attention_heads", "depth", "vision_hidden_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"connector_config.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_global_tokens < 0:
            raise ValueError(f"connector_config.num_global_tokens must be >= 0, got {self.num_global_tokens}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"connector_config.hidden_size ({self.hidden_size}) must be divisible by "
                f"connector_config.num_attention_heads ({self.num_attention_heads})"
            )
        if self.mlp_ratio <= 0:
            raise ValueError(f"connector_config.mlp_ratio must be > 0, got {self.mlp_ratio}")

    @property
    def num_output_tokens(self) -> int:
        """M + L: the number of visual tokens handed to the LLM (the same with and without global tokens)."""
        return self.num_queries + self.num_global_tokens


_CONNECTOR_KEYS = (
    "num_queries", "hidden_size", "num_attention_heads", "depth", "mlp_ratio", "use_global_tokens",
    "vision_feature_layer", "layer_norm_eps", "attention_dropout", "initializer_range",
)
"""Connector settings a user may override (the others are derived from the vision tower)."""


def _sub_config(value: Any, cls: type[PretrainedConfig], field: str) -> PretrainedConfig:
    """Build a sub-config from None (defaults), a dict, or a config instance."""
    if value is None:
        return cls()
    if isinstance(value, PretrainedConfig):
        return value
    if isinstance(value, dict):
        value = dict(value)
        model_type = value.pop("model_type", cls.model_type)
        if field == "text_config" and model_type != cls.model_type:
            # Another causal LM than OPT: resolve its config class through the Auto registry.
            from transformers import AutoConfig

            return AutoConfig.for_model(model_type, **value)
        return cls(**value)
    raise TypeError(f"{field} must be a dict or a {cls.__name__}, got {type(value).__name__}")


class IFASConfig(PretrainedConfig):
    r"""Configuration of `IFASForConditionalGeneration` (model_type ``"ifas"``).

    Args:
        vision_config (`dict` or `CLIPVisionConfig`): the frozen vision encoder (paper: CLIP ViT-L/14, 224 px).
            Defaults to `CLIPVisionConfig()`; `from_pretrained_parts` fills it from the real checkpoint.
        connector_config (`dict` or `GACConfig`): the Globally Aware Connector. Its `vision_hidden_size` and
            `num_global_tokens` (L) are overwritten here from `vision_config`.
        text_config (`dict` or `OPTConfig`): the language model (paper: OPT-2.7B).
        lopsided_alpha (`float`, defaults to 0.7): alpha of the Lopsided LM loss (eq. 4), in [0, 1]; see
            `DEFAULT_LOPSIDED_ALPHA` for where 0.7 comes from.
        loss_type (`str`, defaults to "lopsided"): "lopsided" (eq. 4) or "plain" (ordinary LM loss, ablation).
        llm_training (`str`, defaults to "full"): "full" | "lora" | "qlora" | "frozen". The paper calls OPT
            "pre-trained" (not frozen) and uses lr 1e-5, a full fine-tuning rate: the default follows it. With
            AdamW and fp32 master weights, full tuning of the 2.7 B parameters needs ~43 GB of weights, gradients
            and optimizer state plus activations, estimated (not measured) to fit one 80 GB GPU at batch 32
            (`ifas_model.adapters.set_training_dtypes`). "lora" / "qlora" fit smaller GPUs, keep checkpoints
            small while training and the LLM closer to its pre-trained language ability; the trainer gives them
            lr 1e-4 unless one is set. The trainer applies the mode with `ifas_model.adapters.apply_llm_training`.
        lora_r / lora_alpha / lora_dropout: LoRA hyper-parameters used by "lora" and "qlora" (16 / 32 / 0.05).
        yes_token_id / no_token_id (`int`): ids of the judgment tokens " Yes" / " No" with their leading space,
            as the LLM's BPE tokenizes them after "Answer:" (OPT's GPT-2 BPE gives "Yes" and " Yes" different ids). Set from the tokenizer when the model is
            built; `score` reads `yes_token_id`, and the processor trains exactly these ids.
        initializer_range (`float`, defaults to 0.02): std for the connector's language projection.
        base_models (`list[str]`, optional): Hub ids / paths of the pretrained parts the model was assembled
            from (vision, text), written by `from_pretrained_parts`; model cards cite them.
    """

    model_type = "ifas"
    sub_configs = {"vision_config": CLIPVisionConfig, "connector_config": GACConfig, "text_config": OPTConfig}

    def __init__(
        self,
        vision_config: dict | PretrainedConfig | None = None,
        connector_config: dict | PretrainedConfig | None = None,
        text_config: dict | PretrainedConfig | None = None,
        lopsided_alpha: float = DEFAULT_LOPSIDED_ALPHA,
        loss_type: str = "lopsided",
        llm_training: str = "full",
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.05,
        yes_token_id: int | None = None,
        no_token_id: int | None = None,
        initializer_range: float = 0.02,
        base_models: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.vision_config = _sub_config(vision_config, CLIPVisionConfig, "vision_config")
        self.connector_config = _sub_config(connector_config, GACConfig, "connector_config")
        self.text_config = _sub_config(text_config, OPTConfig, "text_config")
        # Tie the dimensions together: the connector reads every layer of the vision tower.
        self.connector_config.vision_hidden_size = self.vision_config.hidden_size
        self.connector_config.num_global_tokens = self.vision_config.num_hidden_layers
        self.lopsided_alpha = float(lopsided_alpha)
        self.loss_type = loss_type
        self.llm_training = llm_training
        self.lora_r = int(lora_r)
        self.lora_alpha = int(lora_alpha)
        self.lora_dropout = float(lora_dropout)
        self.yes_token_id = None if yes_token_id is None else int(yes_token_id)
        self.no_token_id = None if no_token_id is None else int(no_token_id)
        self.initializer_range = float(initializer_range)
        self.base_models = [str(b) for b in base_models] if base_models else []
        kwargs.setdefault("tie_word_embeddings", getattr(self.text_config, "tie_word_embeddings", True))
        super().__init__(**kwargs)
        self.validate_ifas()

    def validate_ifas(self) -> None:
        """Raise ValueError naming the field when a setting is invalid."""
        if not 0.0 <= self.lopsided_alpha <= 1.0:
            raise ValueError(f"lopsided_alpha must be in [0, 1], got {self.lopsided_alpha}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.llm_training not in LLM_TRAINING_MODES:
            raise ValueError(
                f"llm_training must be one of {', '.join(LLM_TRAINING_MODES)}, got {self.llm_training!r}"
            )
        layers = self.vision_config.num_hidden_layers
        layer = self.connector_config.vision_feature_layer
        if not -layers <= layer <= layers or layer == 0:
            raise ValueError(
                f"connector_config.vision_feature_layer must index one of the {layers} vision layers "
                f"(1..{layers} or -1..-{layers}; 0, the embedding output, is not a layer), got {layer}"
            )

    @property
    def image_token_count(self) -> int:
        """M + L: visual tokens prepended to the text embeddings (32 + 24 = 56 for ViT-L with M = 32)."""
        return self.connector_config.num_output_tokens

    @property
    def text_embed_dim(self) -> int:
        """Width of the LLM's input embeddings (OPT: `word_embed_proj_dim`, which equals hidden_size at 2.7B)."""
        return int(getattr(self.text_config, "word_embed_proj_dim", None) or self.text_config.hidden_size)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, **kwargs: Any) -> IFASConfig:
        """Load an I-FAS config; a checkpoint of another architecture raises a ValueError naming its type."""
        hub_keys = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")
        config_dict, _ = cls.get_config_dict(
            pretrained_model_name_or_path, **{k: kwargs[k] for k in hub_keys if k in kwargs}
        )
        found = config_dict.get("model_type")
        if found != cls.model_type:
            raise ValueError(
                f"{pretrained_model_name_or_path} holds a checkpoint of model_type {found!r}, not an I-FAS "
                f"('{cls.model_type}') checkpoint. To start I-FAS from a CLIP vision tower and an OPT model, use "
                "IFASForConditionalGeneration.from_pretrained_parts(vision=..., text=...)."
            )
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split user overrides into (connector settings, top-level IFASConfig settings); unknown keys raise.

    Args:
        overrides: keyword overrides such as ``num_queries=16, lopsided_alpha=0.5``.

    Returns:
        The connector part and the top-level part.
    """
    top_keys = (
        "lopsided_alpha", "loss_type", "llm_training", "lora_r", "lora_alpha", "lora_dropout", "initializer_range",
    )
    connector, top = {}, {}
    for key, value in overrides.items():
        if key in _CONNECTOR_KEYS:
            connector[key] = value
        elif key in top_keys:
            top[key] = value
        else:
            raise ValueError(
                f"unknown model setting {key!r}; connector settings: {', '.join(_CONNECTOR_KEYS)}; "
                f"model settings: {', '.join(top_keys)}"
            )
    return connector, top


# Registered here, not only with the model: `IFASProcessor.from_pretrained` reads config.json through AutoConfig
# (AutoTokenizer does), and an unregistered "ifas" made transformers warn about a model of type ``.
AutoConfig.register(IFASConfig.model_type, IFASConfig, exist_ok=True)
AutoConfig.register(GACConfig.model_type, GACConfig, exist_ok=True)
