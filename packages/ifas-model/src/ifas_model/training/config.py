"""Run settings of the I-FAS trainer: the frozen `TrainConfig`, its presets, and how they are resolved.

Precedence, lowest first: the dataclass defaults (the paper's recipe) < the training preset named by
``preset`` < an optional YAML file (unknown keys are errors) < explicit command-line flags.
The resolved configuration is written to ``<output_dir>/config.yaml`` by the trainer.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .distributed import DEFAULT_TIMEOUT_MINUTES

logger = logging.getLogger(__name__)

LLM_MODES = ("full", "lora", "qlora", "frozen")
LOSS_TYPES = ("lopsided", "plain")
ANSWER_MODES = ("full", "judgment-only", "general-captions")
PRECISIONS = ("auto", "bf16", "fp32")
SCHEDULES = ("cosine", "constant")
RESUME_MODES = ("auto", "must", "never")
PAPER_LEARNING_RATE = 1e-5
"""The paper's learning rate (Implementation Details: 1e-5), used for ``llm`` = full (the default) and frozen."""
LORA_LEARNING_RATE = 1e-4
"""Learning rate of ``llm`` = lora / qlora when none is given (documented deviation: LoRA adapters barely move
at the paper's full fine-tuning rate 1e-5; 1e-4 is the usual LoRA rate)."""
DEFAULT_LOPSIDED_ALPHA = 0.7
"""``IFASConfig``'s default alpha (kept equal to `ifas_model.configuration.DEFAULT_LOPSIDED_ALPHA`, which this
light module does not import; a test checks they agree)."""
NO_EVAL = "none"
"""Value of ``eval_split`` that turns periodic evaluation off."""
HOLDOUT = "holdout"
"""Value of ``eval_split`` that asks for the deterministic hold-out of the training split (see data.py)."""


class ConfigError(ValueError):
    """A setting with a wrong value or type; ``field`` names it (the YAML file is named by `resolve_config`)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on. Defaults are the paper's recipe (its Implementation Details: AdamW, lr 1e-5, weight decay 1e-2, batch 32, at most 10 epochs) where it has one."""

    # --- data -------------------------------------------------------------------------------------
    dataset: str = ""
    """Hub id or local path of the scf VQA corpus (validated with ``scf.schema.load_table(kind="vqa")``)."""
    sources: str | None = None
    """Comma-separated ``source`` values to train and evaluate on (None: every source). A protocol setting
    names them: ``ifas-eval --list-protocols`` (e.g. Protocol 1's O&C&I->M trains on
    ``OULU-NPU,CASIA-FASD,Idiap Replay-Attack`` with ``train_split="train,test"``)."""
    train_split: str = "train"
    """Split(s) of the corpus to train on, comma-separated (``train,test`` for FLIP's MCIO training lists)."""
    eval_split: str | None = None
    """Split for periodic evaluation. None: ``dev``, else ``test``, else ``holdout``; ``none`` disables it."""
    holdout_fraction: float = 0.1
    """Share of training *videos* held out when ``eval_split`` resolves to ``holdout`` (hash of video_id)."""
    answers: str = "full"
    """``full`` (judgment + SCF interpretation), ``judgment-only`` (no SCF), ``general-captions`` (T_F for fakes)."""
    max_train_samples: int | None = None
    """Use only the first N training rows (debugging); None uses all."""
    max_eval_samples: int | None = 2000
    """Cap on evaluated rows per evaluation, to keep evaluation cheap: a larger eval split is replaced by a
    sample of N rows drawn with ``seed`` and stratified by (source, label) (`data.stratified_subsample`)."""
    num_workers: int = 2
    """DataLoader worker processes decoding images (0 = decode in the main process)."""

    # --- model ------------------------------------------------------------------------------------
    preset: str = "default"
    """Model preset of ``ifas_model.presets.build_model``: ``default`` (CLIP ViT-L/14 + OPT-2.7B) or ``tiny``."""
    vision_model: str | None = None
    """Hub id or local path of the vision encoder, replacing the preset's (``default`` preset only)."""
    language_model: str | None = None
    """Hub id or local path of the LLM, replacing the preset's (``default`` preset only)."""
    llm: str = "full"
    """How the LLM trains: ``full``, ``lora``, ``qlora`` (4-bit base + LoRA) or ``frozen``; the vision encoder
    is always frozen. ``full`` is the default: the paper's recipe (it fine-tunes the pre-trained OPT at lr 1e-5,
    a full fine-tuning rate). Trainable weights are kept in fp32 for AdamW (`set_training_dtypes`), so OPT-2.7B
    needs ~43 GB of weights, gradients and moments plus activations: estimated (not measured) to fit one 80 GB GPU at batch 32.
    ``lora``/``qlora`` fit smaller cards; they train at `LORA_LEARNING_RATE` unless a rate is given."""
    lora_rank: int = 16
    """LoRA rank r (``lora``/``qlora``)."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_rank)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch."""
    loss: str = "lopsided"
    """``lopsided`` (paper eq. 4) or ``plain`` (the ordinary LM loss over all answer tokens; Table 3 ablation)."""
    alpha: float | None = None
    """Weight of the judgment loss in the Lopsided LM loss; None resolves to the model's default
    (``DEFAULT_LOPSIDED_ALPHA`` = 0.7, see `ifas_model.configuration`), so config.yaml records the value used."""
    gac: bool = True
    """Use the Globally Aware Connector's global (layer-CLS) features; False is the "no GAC" ablation."""

    # --- optimisation -----------------------------------------------------------------------------
    learning_rate: float | None = None
    """AdamW peak learning rate. None resolves by ``llm``: 1e-5 (paper) for ``full`` and ``frozen``,
    `LORA_LEARNING_RATE` (1e-4, a documented deviation: 1e-5 is a full fine-tuning rate and barely moves LoRA
    adapters) for ``lora`` and ``qlora``. `learning_rate_note` says which rule applied."""
    weight_decay: float = 1e-2
    """AdamW weight decay (paper); not applied to biases and norm weights."""
    batch_size: int = 32
    """Samples per optimizer step on ONE device before accumulation (paper: 32 on one device)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step; effective batch = batch_size * grad_accum * world."""
    global_batch_size: int | None = None
    """Samples per optimizer step over all processes, whatever their number (`apply_global_batch`): the
    per-device micro-batch becomes at most ``batch_size`` and ``grad_accum`` makes up the rest, so the paper's
    32 holds on 1 or 8 GPUs. None: the effective batch is ``batch_size * grad_accum * world``."""
    epochs: int = 10
    """Passes over the training split (paper: at most 10)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides ``epochs`` for the schedule length)."""
    schedule: str = "cosine"
    """Learning-rate schedule after warm-up (the paper is silent; cosine to zero, as in LLaVA-style tuning)."""
    warmup_ratio: float = 0.03
    """Share of the total steps spent in linear warm-up (paper silent; 3% as in LLaVA-style tuning)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 disables clipping)."""
    precision: str = "auto"
    """``auto`` = bf16 autocast on CUDA, fp32 on CPU; ``bf16`` forces autocast; ``fp32`` turns it off."""
    gradient_checkpointing: bool = False
    """Recompute LLM activations in the backward pass (less memory, ~30% slower)."""
    seed: int = 0
    """Seeds model construction, data order and dropout (results in the paper are the mean of 3 seeds). On the CPU
    the same seed gives the same weights bit for bit; on a GPU some kernels (attention backward, scatter/index
    reductions with atomics) are nondeterministic, so two runs may differ in the last bits unless
    ``deterministic``."""
    deterministic: bool = False
    """Ask torch for deterministic GPU kernels (``torch.use_deterministic_algorithms(True, warn_only=True)``,
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, cuDNN benchmark off): slower, and an operation without a deterministic
    kernel warns once instead of failing. No effect on the CPU, which is deterministic already."""
    dist_timeout_min: int = DEFAULT_TIMEOUT_MINUTES
    """Several processes: minutes a rank may wait at a collective (while rank 0 alone writes a checkpoint or
    ``final/``) before the run is aborted (`ifas_model.training.distributed.DEFAULT_TIMEOUT_MINUTES`: 120;
    torch's NCCL default is 10)."""

    # --- run folder -------------------------------------------------------------------------------
    output_dir: str = "runs/ifas"
    """Run folder: config.yaml, metrics.jsonl, checkpoints/, final/, summary.json."""
    log_every: int = 10
    """Write a training metrics line every N optimizer steps."""
    eval_every: int = 500
    """Evaluate every N optimizer steps (and always at the end); 0 = only at the end."""
    save_every: int = 500
    """Write a resumable checkpoint every N optimizer steps (and at the end); 0 = only at the end."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    resume: str = "auto"
    """``auto``: resume when the run folder has checkpoints; ``must``: fail without one; ``never``: fail if any."""
    push_to_hub: str | None = None
    """Hub repository ``org/name`` to upload ``final/`` and its model card to at the end."""
    hub_private: bool = True
    """Create the Hub repository as private."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"config field '{name}': {why}, got {getattr(self, name)!r}", field=name)

        for f in fields(self):  # a wrong type is named here, not as a TypeError further on
            object.__setattr__(self, f.name, coerce_value(f.name, getattr(self, f.name)))
        if self.learning_rate is None:  # the recipe's rate for the LLM mode (see the field's docstring)
            rate = LORA_LEARNING_RATE if self.llm in ("lora", "qlora") else PAPER_LEARNING_RATE
            object.__setattr__(self, "learning_rate", rate)
            object.__setattr__(self, "_lr_rule", "lora-default" if rate == LORA_LEARNING_RATE else "paper")
        if self.alpha is None:
            object.__setattr__(self, "alpha", DEFAULT_LOPSIDED_ALPHA)

        choices = {"llm": LLM_MODES, "loss": LOSS_TYPES, "answers": ANSWER_MODES, "precision": PRECISIONS,
                   "schedule": SCHEDULES, "resume": RESUME_MODES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise bad(name, f"must be one of {', '.join(allowed)}")
        if not self.dataset:
            raise ConfigError("config field 'dataset': required (a Hub id or a local path of a VQA corpus)",
                              field="dataset")
        if not 0.0 <= self.alpha <= 1.0:  # never None here: resolved to the model default above
            raise bad("alpha", "must be in [0, 1]")
        if self.learning_rate <= 0:
            raise bad("learning_rate", "must be > 0")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        for name in ("batch_size", "grad_accum", "epochs", "lora_rank", "lora_alpha", "log_every",
                     "keep_checkpoints", "dist_timeout_min"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        for name in ("eval_every", "save_every", "num_workers"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        for name in ("max_steps", "max_train_samples", "max_eval_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise bad(name, "must be >= 1 or null")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise bad("warmup_ratio", "must be in [0, 1)")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise bad("holdout_fraction", "must be in (0, 1)")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise bad("lora_dropout", "must be in [0, 1)")
        if self.max_grad_norm < 0:
            raise bad("max_grad_norm", "must be >= 0")
        if self.global_batch_size is not None and self.global_batch_size < 1:
            raise bad("global_batch_size", "must be >= 1 or null")
        if self.push_to_hub is not None and self.push_to_hub.count("/") != 1:
            raise bad("push_to_hub", "must be a Hub repository id org/name")
        if self.preset != "default" and (self.vision_model or self.language_model):
            raise ConfigError("config fields 'vision_model'/'language_model' only apply to the 'default' preset",
                              field="vision_model" if self.vision_model else "language_model")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a plain dict (YAML/JSON friendly)."""
        return dataclasses.asdict(self)

    @property
    def learning_rate_note(self) -> str:
        """Where the learning rate came from, for the banner and config.yaml (empty when it was given)."""
        rule = getattr(self, "_lr_rule", "")
        if rule == "lora-default":
            return (f"{self.learning_rate:g}: the LoRA default for --llm {self.llm} (a deviation from the paper's "
                    f"{PAPER_LEARNING_RATE:g}, a full fine-tuning rate; docs/training.md)")
        if rule == "paper":
            return f"{self.learning_rate:g}: the paper's rate"
        return ""


def _field_kind(name: str) -> tuple[str, bool]:
    """(base type name, None allowed) of a `TrainConfig` field, from its annotation string."""
    annotation = str(next(f.type for f in fields(TrainConfig) if f.name == name))
    parts = [p.strip() for p in annotation.split("|")]
    return next(p for p in parts if p != "None"), "None" in parts


_JOINABLE = frozenset({"sources", "train_split"})
"""Comma-separated fields that may also be written as a YAML list."""


def coerce_value(name: str, value: Any) -> Any:
    """Convert a setting read from YAML (or given in code) to its `TrainConfig` field type.

    PyYAML reads ``1e-4`` (no dot) as a string, so a number written as text is accepted for float and int
    fields; an int is accepted for a float field; a float with an integral value for an int field; a YAML list
    of names for ``sources`` / ``train_split``. ``null`` is accepted where the field allows None.

    Raises:
        ConfigError: the value cannot be read as the field's type (the message names the field and value).
    """
    kind, nullable = _field_kind(name)
    if value is None:
        if nullable:
            return None
        raise ConfigError(f"{name}: expected {_KIND_WORDS[kind]}, got null", field=name)
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
    elif kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
    elif kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if name in _JOINABLE and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ",".join(value)
    raise ConfigError(f"{name}: expected {_KIND_WORDS[kind]}, got {value!r}", field=name)


_KIND_WORDS = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}


# Training presets: what a model preset changes in the recipe. ``tiny`` is the random offline model; the
# paper's lr 1e-5 barely moves random weights, so it trains with lr 3e-3 for 40 short epochs of the embedded
# sample (240 steps, about a minute on 2 CPU cores), the whole tiny LLM (LoRA buys nothing at that size),
# in fp32, with no loader workers.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "tiny": {
        "llm": "full",
        "learning_rate": 3e-3,
        "weight_decay": 0.0,
        "batch_size": 32,
        "epochs": 40,
        "warmup_ratio": 0.0,
        "schedule": "constant",
        "precision": "fp32",
        "num_workers": 0,
        "eval_every": 0,
        "save_every": 50,
        "log_every": 5,
        "max_eval_samples": 512,
        "lora_rank": 8,
        "lora_alpha": 16,
    },
}


def config_field_names() -> tuple[str, ...]:
    """Names of every `TrainConfig` field."""
    return tuple(f.name for f in fields(TrainConfig))


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML run-settings file: a mapping of `TrainConfig` field names (``-`` or ``_``) to values.

    Values are converted to the field types with `coerce_value` (``learning_rate: 1e-4`` is a number).

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: not valid YAML, not a mapping, a key that is not a `TrainConfig` field, or a value of the
            wrong type; one line naming the file (and the key).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML: {what}{where}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text file ({err.reason})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a mapping of setting names to values, got {type(data).__name__}")
    known = set(config_field_names())
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise ConfigError(f"{path}: unknown setting '{key}' (known: {', '.join(sorted(known))})")
        try:
            out[name] = coerce_value(name, value)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}", field=name) from err
    return out


def resolve_config(flags: dict[str, Any] | None = None, config_file: str | Path | None = None) -> TrainConfig:
    """Build the run's `TrainConfig`: defaults < preset < YAML file < explicit flags.

    Args:
        flags: settings given explicitly (None values are "not given" and ignored).
        config_file: optional YAML file (see `read_yaml_config`).

    Raises:
        ValueError: an unknown preset, an unknown key, or a value that fails validation (a `ConfigError`
            that names the YAML file when the value came from it).
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    from_file = read_yaml_config(config_file) if config_file else {}
    known = set(config_field_names())
    for key in flags:
        if key not in known:
            raise ValueError(f"unknown setting '{key}'")
    preset = flags.get("preset", from_file.get("preset", TrainConfig.preset))
    if preset not in TRAIN_PRESETS:
        raise ValueError(f"unknown preset '{preset}' (known: {', '.join(TRAIN_PRESETS)})")
    merged: dict[str, Any] = {**TRAIN_PRESETS[preset], **from_file, **flags, "preset": preset}
    try:
        return TrainConfig(**merged)
    except ConfigError as err:
        if config_file and err.field in from_file and err.field not in flags:
            raise ConfigError(f"{config_file}: {err}", field=err.field) from err
        raise


def write_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML (readable back with `read_yaml_config`).

    A resolved default that deviates from the paper (the LoRA learning rate) is explained in a comment line.
    """
    import yaml

    from .checkpoint import write_text_atomic

    note = config.learning_rate_note
    header = f"# learning_rate {note}\n" if note and "deviation" in note else ""
    write_text_atomic(path, header + yaml.safe_dump(config.to_dict(), sort_keys=False) + CONFIG_END + "\n")


CONFIG_END = "# end of ifas-train config.yaml"
"""The last line `write_config` writes: a file without it was cut short (or written before it existed)."""


def apply_global_batch(config: TrainConfig, world_size: int) -> TrainConfig:
    """Resolve ``global_batch_size`` for ``world_size`` processes into ``batch_size`` and ``grad_accum``.

    Each process takes ``global_batch_size / world_size`` samples per optimizer step, in micro-batches of the
    largest size <= ``batch_size`` that divides it. Example: 32 on 8 GPUs -> micro-batch 4, no accumulation;
    32 on 1 GPU with ``batch_size`` 8 -> micro-batch 8, 4 accumulated. A config without
    ``global_batch_size`` is returned unchanged.

    Raises:
        ConfigError: ``global_batch_size`` is not a multiple of ``world_size``, or ``grad_accum`` was also set
            (to something that does not give ``global_batch_size``).
    """
    g = config.global_batch_size
    if g is None or config.batch_size * config.grad_accum * world_size == g:  # none, or already resolved
        return config
    if config.grad_accum != 1:
        raise ConfigError("config field 'global_batch_size' sets grad_accum itself: give grad_accum or "
                          "global_batch_size, not both", field="global_batch_size")
    if g % world_size:
        raise ConfigError(f"config field 'global_batch_size': {g} is not a multiple of the {world_size} training "
                          "processes", field="global_batch_size")
    per_device = g // world_size
    micro = min(config.batch_size, per_device)
    while per_device % micro:
        micro -= 1
    resolved = dataclasses.replace(config, batch_size=micro, grad_accum=per_device // micro)
    object.__setattr__(resolved, "_lr_rule", getattr(config, "_lr_rule", ""))  # keep where the rate came from
    return resolved


RESUME_INVARIANT_FIELDS = frozenset({"output_dir", "resume", "push_to_hub", "hub_private", "num_workers",
                                     "log_every", "eval_every", "save_every", "keep_checkpoints",
                                     "max_eval_samples", "dataset", "dist_timeout_min", "deterministic"})
"""Fields that may change between a run and its resumption without changing the trained weights."""


def resume_differences(saved: dict[str, Any], current: TrainConfig) -> list[str]:
    """Fields (other than `RESUME_INVARIANT_FIELDS`) whose value differs from the saved run configuration.

    A saved ``alpha: null`` (runs from before alpha was resolved) counts as the default it meant.
    """
    now = current.to_dict()
    saved = dict(saved)
    if "alpha" in saved and saved["alpha"] is None:
        saved["alpha"] = DEFAULT_LOPSIDED_ALPHA
    return [k for k in now if k not in RESUME_INVARIANT_FIELDS and k in saved and saved[k] != now[k]]
