"""The model card (README.md) of a trained I-FAS checkpoint, and its upload to the Hugging Face Hub."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_METRIC_NAMES = {"auc": "AUC", "hter": "HTER", "eer": "EER", "tpr_at_fpr_1pct": "TPR@FPR=1%",
                 "loss": "loss"}


def _yaml_list(name: str, values: list[str]) -> list[str]:
    return [f"{name}:"] + [f"- {v}" for v in values] if values else []


_LLM_NOTES = {
    "frozen": "the LLM was not trained; only the connector and the projection to the LLM were",
    "full": "every LLM weight was fine-tuned",
    "lora": "LoRA adapters (rank {r}) were trained and merged into the LLM weights before saving",
    "qlora": "LoRA adapters (rank {r}) were trained on a 4-bit NF4 base, then merged into the dequantized LLM "
             "weights before saving",
}


def llm_training_note(llm: str, lora_rank: int | None = None) -> str:
    """What ``--llm`` did to the LLM, in words, for the model card (``frozen``, ``full``, ``lora``, ``qlora``)."""
    note = _LLM_NOTES.get(llm)
    return note.format(r=lora_rank if lora_rank is not None else "?") if note else f"LLM mode {llm!r}"


PATH_FIELDS = ("dataset", "vision_model", "language_model", "output_dir")
"""`TrainConfig` fields that can hold a local path: a published card shows their folder names only."""


def is_local(name: str) -> bool:
    """Whether ``name`` is a path on this machine rather than a Hub id (``org/name``)."""
    from ifas_model._loading import looks_like_local_path

    return looks_like_local_path(name) or Path(name).exists()


def shown_name(name: str | None) -> str | None:
    """What a card or a pushed ``config.json`` shows for an id or path: a Hub id as it is, a local path as its
    folder name (``/home/me/models/opt`` -> ``opt``), so that no user name, mount point or dataset location is
    published. The run folder's ``config.yaml`` keeps the full paths (resuming needs them)."""
    if not name:
        return name
    return (Path(name).name or str(name)) if is_local(str(name)) else str(name)


@contextlib.contextmanager
def local_paths_hidden(config: Any) -> Iterator[None]:
    """While saving ``final/``: the model config's ``base_models`` and its parts' ``_name_or_path`` by `shown_name`.

    ``from_pretrained_parts`` records where the parts came from, as given (a local path is absolute or relative
    to the working folder); ``config.json`` is pushed with the model, so a local path is written as its folder
    name. The config in memory is restored afterwards.
    """
    base_models = list(getattr(config, "base_models", []) or [])
    subs = [sub for sub in (getattr(config, key, None) for key in ("vision_config", "text_config", "connector_config"))
            if sub is not None and getattr(sub, "_name_or_path", "")]
    names = [sub._name_or_path for sub in subs]
    try:
        config.base_models = [shown_name(b) for b in base_models]
        for sub, name in zip(subs, names, strict=True):
            sub._name_or_path = shown_name(name)
        yield
    finally:
        config.base_models = base_models
        for sub, name in zip(subs, names, strict=True):
            sub._name_or_path = name


def model_card(config: dict[str, Any], *, eval_metrics: dict[str, Any] | None, eval_source: str,
               base_models: list[str], parameter_counts: dict[str, int], steps: int,
               skipped_images: int, versions: dict[str, str] | None = None) -> str:
    """Write the model card of a finished run.

    The card is published with ``--push-to-hub``: local paths (the corpus, the parts, the run folder) appear as
    their folder names only (`shown_name`); Hub ids as they are.

    Args:
        config: the resolved `TrainConfig` as a dict.
        eval_metrics: the last evaluation (FLIP/SSDG convention fractions and the loss), or None.
        eval_source: where the evaluation rows came from (split name or hold-out description).
        base_models: ids or paths of the pretrained parts (vision encoder, LLM); empty for random presets.
        parameter_counts: ``trainable`` and ``frozen`` parameter counts.
        steps: optimizer steps taken.
        skipped_images: training images that could not be decoded and were skipped.
        versions: the software that trained it (`scf.schema.software_versions`), listed under "Software".
    """
    import yaml

    raw_dataset = config["dataset"]
    hub_dataset = not is_local(raw_dataset)
    hidden = [k for k in PATH_FIELDS if config.get(k) and is_local(str(config[k]))]
    config = {**config, **{k: shown_name(config[k]) for k in hidden}}
    local_parts = {b for b in base_models if is_local(b)}
    hub_parts = [b for b in base_models if b not in local_parts]
    parts = [f"`{shown_name(b)}`" + (" (a local folder)" if b in local_parts else "") for b in base_models]
    front = ["---", "library_name: transformers", "pipeline_tag: image-text-to-text", "license: other"]
    front += _yaml_list("base_model", hub_parts)
    front += _yaml_list("datasets", [raw_dataset] if hub_dataset else [])
    front += ["tags:", "- face-anti-spoofing", "- i-fas", "- interpretable", "---", ""]
    lines = [
        "# I-FAS: interpretable face anti-spoofing",
        "",
        "An I-FAS model (Zhang et al., *Interpretable Face Anti-Spoofing: Enhancing Generalization with Multimodal "
        "Large Language Models*, AAAI 2025) trained with `ifas-train`. Given a face crop and the question "
        '"Is this photo of a real person?" it answers "Yes"/"No" and explains why ("This is ..."); the '
        "anti-spoofing score is P(\"Yes\") = P(real) from one forward pass.",
        "",
        "## Model",
        "",
        f"- Model preset: `{config['preset']}`"
        + (" (random weights built from config: a test model, useless for real faces)" if config["preset"] == "tiny"
           else ""),
        f"- Pretrained parts: {', '.join(parts) if parts else 'none (random)'}",
        "- Vision encoder: frozen. Connector: the Globally Aware Connector (GAC)"
        + ("" if config["gac"] else ", here WITHOUT global features (the \"no GAC\" ablation)") + ".",
        f"- LLM training: `{config['llm']}` ({llm_training_note(config['llm'], config.get('lora_rank'))})",
        f"- Parameters: {parameter_counts.get('trainable', 0):,} trained, {parameter_counts.get('frozen', 0):,} frozen",
        "",
        "## Training data",
        "",
        f"- Corpus: `{config['dataset']}`{'' if hub_dataset else ' (a local folder)'} (an SCF VQA corpus; split "
        f"`{config['train_split']}`), answers: `{config['answers']}`",
        f"- Images skipped because they could not be decoded: {skipped_images}",
        "",
        "## Training configuration",
        "",
        f"Loss: `{config['loss']}`" + (f" (alpha = {config['alpha']})" if config["alpha"] is not None else "")
        + f"; {steps} optimizer steps. The resolved configuration:",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False).strip(),
        "```",
        "",
    ]
    if hidden:
        lines += [f"Local paths ({', '.join(hidden)}) are shown by their folder names only; the run folder's "
                  "`config.yaml` keeps them in full.", ""]
    lines += [
        "## Evaluation",
        "",
    ]
    if eval_metrics:
        lines += [f"On `{eval_source}` (FLIP/SSDG convention: label 1 = real, frame scores averaged per video; "
                  "HTER at the threshold chosen on this same set, as the published tables do, so it is not a "
                  "deployable operating point):", "", "| metric | value |", "|---|---|"]
        for key, label in _METRIC_NAMES.items():
            if isinstance(eval_metrics.get(key), int | float):
                value = eval_metrics[key]
                lines.append(f"| {label} | {value * 100:.2f}% |" if key != "loss" else f"| {label} | {value:.4f} |")
    else:
        lines.append("No evaluation was run.")
    lines += [
        "",
        "## Intended use",
        "",
        "Research on face anti-spoofing (presentation attack detection) and its explanations: scoring face crops "
        "as real or attack, and reading the model's stated reason. Use `ifas-eval` for cross-domain protocols.",
        "",
        "## Limitations",
        "",
        "- Interpretations are generated text learned from automatic captions (SCF); they can be wrong even when "
        "the judgment is right, and must not be taken as evidence.",
        "- Trained on the attack types and capture conditions of its corpus; unseen attacks and domains can fail.",
        "- Not a certified biometric component; choose an operating threshold on your own development data.",
        "- Face datasets carry demographic biases that the model can inherit.",
        "",
        "## Software",
        "",
        *([f"- {name}: {version}" for name, version in versions.items()] if versions
          else ["- not recorded"]),
        "",
        "## How to load",
        "",
        "```python",
        "from ifas_model.modeling import IFASForConditionalGeneration",
        "from ifas_model.processing import IFASProcessor",
        "",
        'model = IFASForConditionalGeneration.from_pretrained("PATH_OR_REPO")',
        'processor = IFASProcessor.from_pretrained("PATH_OR_REPO")',
        "```",
        "",
    ]
    return "\n".join(front + lines)


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = True, token: str | None = None) -> str:
    """Upload a saved model folder (weights, processor, README.md) to a Hub model repository.

    The token comes from ``token`` or the usual ``HF_TOKEN`` / ``hf auth login``; it is never printed.

    Returns:
        The URL of the commit.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                             commit_message="Upload I-FAS checkpoint trained with ifas-train")
    url = str(getattr(info, "commit_url", info))
    logger.info("pushed %s to %s", folder, repo_id)
    return url
