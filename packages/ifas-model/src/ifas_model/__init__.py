"""ifas_model: the I-FAS model (CLIP + Globally Aware Connector + OPT), its processor, loss and inference.

Names are exported lazily: ``import ifas_model`` imports neither torch nor transformers; the first access of
e.g. ``ifas_model.IFASForConditionalGeneration`` imports its module (and registers the model with
``AutoConfig`` / ``AutoModel``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "IFASConfig": "configuration",
    "GACConfig": "configuration",
    "GloballyAwareConnector": "connector",
    "IFASForConditionalGeneration": "modeling",
    "IFASOutput": "modeling",
    "IFASProcessor": "processing",
    "lopsided_lm_loss": "loss",
    "LopsidedLoss": "loss",
    "LopsidedLMLoss": "loss",
    "MODEL_PRESETS": "presets",
    "build_model": "presets",
    "score_images": "inference",
    "explain_images": "inference",
    "freeze_vision": "adapters",
    "apply_llm_training": "adapters",
    "merge_for_save": "adapters",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the module that defines `name` on first access."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ifas_model' has no attribute {name!r}")
    module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    if name == "IFASConfig" or name == "GACConfig":
        importlib.import_module(".modeling", __name__)  # registers "ifas" with AutoConfig / AutoModel
    return getattr(module, name)


def __dir__() -> list[str]:
    """The lazy exports too, so tab completion and ``dir(ifas_model)`` list them."""
    return sorted(set(globals()) | set(__all__))
