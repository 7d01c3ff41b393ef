"""The I-FAS training loop: Lopsided-LM fine-tuning on an SCF VQA corpus, resumable and multi-process.

Read top to bottom: `build_for_training` (model, frozen parts, LLM mode), `Trainer.__init__` (data,
optimizer, schedule, run folder), `Trainer.fit` (the loop: accumulate, step, log, evaluate, checkpoint),
`Trainer.evaluate`, `Trainer.finish` (final model, card, summary, optional push).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint import (
    checkpoint_dir,
    fsync_files,
    human_size,
    latest_checkpoint,
    replace_dir,
    write_text_atomic,
    writing,
)
from .config import CONFIG_END, TrainConfig, apply_global_batch, resume_differences, write_config
from .data import (
    Batch,
    ResumableBatchSampler,
    VQACollator,
    VQADataset,
    corpus_fingerprint,
    load_corpus,
    select_sources,
    split_train_eval,
    stratified_subsample,
)
from .distributed import DistState, all_reduce_sum, barrier, gather_lists, init_distributed

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from rich.console import Console

logger = logging.getLogger(__name__)


LOSS_KEYS = ("loss", "loss_judgment", "loss_interpretation")
"""The losses summed over the micro-batches of a train log line (their means are the line's values)."""

PROVENANCE_EXTRA = ("peft", "accelerate", "bitsandbytes")
"""Libraries recorded in ``summary.json`` and the model card besides `scf.schema.software_versions`' own list
(LoRA/QLoRA training and merging depend on them)."""


class NonFiniteLossError(RuntimeError):
    """The loss (or gradient norm) became NaN or inf; the run stopped, the last good checkpoint is kept."""


class ResumeError(ValueError):
    """The run folder cannot be resumed with these settings (or must be and cannot)."""


class PushError(RuntimeError):
    """``--push-to-hub`` failed after the run finished; ``final/`` and ``summary.json`` are written and kept."""


def base_models(config: TrainConfig) -> list[str]:
    """Ids or paths of the pretrained parts a run starts from (empty for presets built from config)."""
    from ifas_model.presets import MODEL_PRESETS

    spec = MODEL_PRESETS[config.preset]
    parts = [config.vision_model or spec.vision, config.language_model or spec.text]
    return [p for p in parts if p]


def build_for_training(config: TrainConfig, compute_dtype: Any = None) -> tuple[Any, Any]:
    """Build the model and processor of the preset with the run's switches, and set what trains.

    The vision encoder is frozen (`freeze_vision`); the LLM follows ``config.llm`` (`apply_llm_training`);
    the connector and the projection to the LLM always train. ``--vision-model`` / ``--language-model``
    replace the default preset's parts (`from_pretrained_parts`).

    Args:
        compute_dtype: the dtype of the 4-bit layers' matmuls with ``llm=qlora`` (bf16 on CUDA).
    """
    import torch

    from ifas_model.adapters import apply_llm_training, freeze_vision
    from ifas_model.presets import MODEL_PRESETS, build_model

    overrides: dict[str, Any] = {"loss_type": config.loss, "use_global_tokens": config.gac,
                                 "llm_training": config.llm}
    if config.alpha is not None:
        overrides["lopsided_alpha"] = config.alpha
    if config.vision_model or config.language_model:
        from ifas_model.modeling import IFASForConditionalGeneration
        from ifas_model.processing import IFASProcessor

        spec = MODEL_PRESETS[config.preset]
        vision, text = config.vision_model or spec.vision, config.language_model or spec.text
        torch.manual_seed(config.seed)  # the fresh GAC's initialisation, as build_model does
        model = IFASForConditionalGeneration.from_pretrained_parts(vision=vision, text=text,
                                                                   **{**spec.connector, **overrides})
        processor = IFASProcessor.from_pretrained_parts(vision=vision, text=text)
    else:
        model, processor = build_model(config.preset, seed=config.seed, **overrides)
    freeze_vision(model)
    model = apply_llm_training(model, config.llm, lora_r=config.lora_rank, lora_alpha=config.lora_alpha,
                               lora_dropout=config.lora_dropout,
                               compute_dtype=compute_dtype if config.llm == "qlora" else None)
    if config.gradient_checkpointing:
        enable_activation_checkpointing(model)
    return model, processor


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute activations in the backward pass (non-reentrant); transformers' newer name when it has it.

    transformers 5.2x renamed ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable`` (the old
    name warns, and goes in v6); earlier 5.x releases have only the old name.
    """
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def ddp_find_unused_parameters(model: torch.nn.Module, config: TrainConfig) -> bool:
    """Whether DDP must look for trainable parameters that a step leaves unused (``find_unused_parameters``).

    In every mode every trainable parameter of I-FAS takes part in every forward pass: the GAC's global path or
    its extra queries (``--no-gac``), the projection, and the LLM's weights (``full``) or adapters on the
    attention projections (``lora``/``qlora``); ``frozen`` trains only the connector and projection
    (tests/ifas_model/test_train_loop.py checks each mode). So the search is off, which spares a traversal of
    the autograd graph per step and torch's warning that it found nothing. It stays on for ``full`` with an
    LLM other than OPT (``--language-model``), whose every weight may not be used (DDP would otherwise stop at
    the next step with an error).
    """
    text_config = getattr(getattr(model, "config", None), "text_config", None)
    return config.llm == "full" and getattr(text_config, "model_type", "opt") != "opt"


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Trainable and frozen parameter counts (bitsandbytes 4-bit weights pack two values per uint8 element)."""
    import torch

    trainable = frozen = 0
    for p in model.parameters():
        n = p.numel() * (2 if p.dtype == torch.uint8 else 1)
        if p.requires_grad:
            trainable += n
        else:
            frozen += n
    return {"trainable": trainable, "frozen": frozen}


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW of the paper's recipe: see `build_adamw` (``config.learning_rate``, ``config.weight_decay``)."""
    return build_adamw(model, learning_rate=config.learning_rate, weight_decay=config.weight_decay)


def build_adamw(model: torch.nn.Module, *, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (paper: lr 1e-5, weight decay 1e-2) with no decay on biases and norm weights (tensors of rank < 2).

    When every trainable parameter is on a CUDA device, torch's fused kernel runs the whole update in a few
    launches (the per-tensor loop costs several ms per step over the full OPT-2.7B's ~500 tensors); elsewhere
    the plain per-tensor loop. Both compute the same update and save the same ``state_dict``, so a run can
    resume on the other kind of device. `tools/benchmark.py` measures training with this optimizer.
    """
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = bool(trainable) and all(p.device.type == "cuda" and p.is_floating_point() for p in trainable)
    kwargs = {"fused": True} if fused else {"foreach": False}
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=learning_rate, betas=(0.9, 0.999), eps=1e-8,
                             **kwargs)


class WarmupSchedule:
    """LR factor: linear warm-up over ``warmup`` steps, then cosine to zero at ``total`` (or constant).

    A class (not a closure) so that ``LambdaLR.state_dict`` stays plain data.
    """

    def __init__(self, warmup: int, total: int, kind: str) -> None:
        self.warmup, self.total, self.kind = warmup, total, kind

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.kind == "constant":
            return 1.0
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def state_dict(self) -> dict[str, Any]:
        return {"warmup": self.warmup, "total": self.total, "kind": self.kind}


def _pushed_to(summary: dict[str, Any], repo: str) -> bool:
    """Whether a run's summary records a push of ``final/`` to ``repo`` (older summaries: only ``hub_commit``)."""
    if "hub_repo" in summary:
        return summary["hub_repo"] == repo
    return f"/{repo}/" in str(summary.get("hub_commit", ""))


def read_saved_config(path: Path) -> dict[str, Any]:
    """The settings a run saved in ``config.yaml``, refusing a damaged or cut-off file in one line.

    `write_config` ends the file with `CONFIG_END`: a file with it is complete, whatever fields a later
    version added or removed. A file without it was cut short, or was written before that line existed, when
    every file ended with the field ``hub_private`` and a newline: one that lacks ``hub_private``, ends in a
    partial key or inside a line is refused as truncated, naming the missing keys, instead of being compared (a partial value would read as
    "settings differ").

    Raises:
        ResumeError: not YAML, not a mapping, or truncated.
    """
    import dataclasses

    import yaml

    remedy = ("restore it, or delete it and rerun the same command (it is written again; the settings are then "
              "not compared with the saved run's)")
    text = path.read_text(errors="replace")
    try:
        saved = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ResumeError(f"{path}: not valid YAML ({' '.join(str(err).split())}); {remedy}") from err
    if not isinstance(saved, dict):
        raise ResumeError(f"{path}: not a mapping of settings ({type(saved).__name__}); {remedy}")
    if text.rstrip().endswith(CONFIG_END):
        return saved
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = [str(k) for k in saved if k not in fields]
    # hub_private: the last field of every file written before CONFIG_END; a cut inside a line leaves no "\n"
    if "hub_private" not in saved or unknown or not text.endswith("\n"):
        missing = [k for k in fields if k not in saved]
        what = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        partial = f"; partial key {unknown[0]!r}" if unknown else ""
        found = f"keys {what} missing{partial}" if what or partial else "it ends inside a line"
        raise ResumeError(f"{path} looks truncated: {found}; {remedy}")
    return saved


def describe_metrics(record: dict[str, Any]) -> str:
    """``AUC 0.8156 HTER 0.3167`` (4 decimals) from an evaluation record, or why they were not computed."""
    if "auc" in record:
        return f"AUC {record['auc']:.4f} HTER {record['hter']:.4f}"
    return record.get("metrics_error", "AUC/HTER not computed")


def use_deterministic_kernels() -> None:
    """Deterministic GPU kernels for this process (``TrainConfig.deterministic``).

    ``CUBLAS_WORKSPACE_CONFIG`` must be set before cuBLAS starts; an existing value is kept. Operations without
    a deterministic kernel warn (once) rather than stop the run.
    """
    import os

    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    logger.info("deterministic kernels on (torch.use_deterministic_algorithms, warn-only)")


class Trainer:
    """One training run of I-FAS in one process of (possibly) several.

    Args:
        config: the resolved run settings.
        model, processor: prebuilt ones (tests); None builds them with `build_for_training`.
        console: where the banner and progress bar go (rank 0 only); None = a new rich console.
    """

    def __init__(self, config: TrainConfig, *, model: Any = None, processor: Any = None,
                 console: Console | None = None) -> None:
        import torch
        from rich.console import Console

        from ifas_model.adapters import set_training_dtypes

        self.dist: DistState = init_distributed(config.dist_timeout_min)
        config = apply_global_batch(config, self.dist.world_size)  # batch_size / grad_accum for this world
        self.config = config
        self.console = console or Console(stderr=True)
        self.run_dir = Path(config.output_dir)
        torch.manual_seed(config.seed)
        if config.deterministic:
            use_deterministic_kernels()

        # -- cheap checks first: the run folder (resume mode, changed settings), the corpus, a finished run --
        self.resume_ckpt = self.check_run_dir()
        corpus = load_corpus(config.dataset)
        self.corpus_fingerprint = corpus_fingerprint(corpus)
        self.check_corpus(self.resume_ckpt)
        self.finished = self.finished_summary(self.resume_ckpt)
        if self.finished is not None:  # nothing to train or build: `fit` reports where the model is
            return

        # -- data: validated corpus, train/eval tables, resumable order ---------------------------------
        corpus = select_sources(corpus, config.sources)
        train_table, eval_table, self.eval_source = split_train_eval(
            corpus, config.train_split, config.eval_split, config.holdout_fraction, sources=config.sources)
        if config.max_train_samples:
            train_table = train_table.select(range(min(config.max_train_samples, len(train_table))))
        self.eval_rows_total = len(eval_table) if eval_table is not None else 0
        if eval_table is not None and config.max_eval_samples:
            eval_table = stratified_subsample(eval_table, config.max_eval_samples, config.seed)
        self.train_set = VQADataset(train_table, config.answers)
        self.eval_set = VQADataset(eval_table, config.answers) if eval_table is not None else None
        self.eval_name = self._eval_name()

        # -- model -------------------------------------------------------------------------------------
        use_bf16 = config.precision == "bf16" or (config.precision == "auto" and self.dist.device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        if model is None:
            model, processor = build_for_training(config, compute_dtype=self.autocast_dtype)
        self.processor = processor
        # Trainable weights fp32 (AdamW's masters), frozen ones in the autocast dtype (see set_training_dtypes).
        self.dtype_counts = set_training_dtypes(model, self.autocast_dtype)
        self.model = model.to(self.dist.device)
        self.counts = parameter_counts(self.model)
        if self.counts["trainable"] == 0:
            raise ValueError("nothing to train: every parameter is frozen")
        self.ddp = self.model
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids,
                                               find_unused_parameters=ddp_find_unused_parameters(self.model, config))

        # -- order, loaders, schedule ---------------------------------------------------------------------
        self.sampler = ResumableBatchSampler(len(self.train_set), config.batch_size, seed=config.seed,
                                             rank=self.dist.rank, world_size=self.dist.world_size)
        self.loader = self._loader(self.train_set, self.sampler, VQACollator(processor))
        self.micro_per_epoch = len(self.sampler)
        self.steps_per_epoch = math.ceil(self.micro_per_epoch / config.grad_accum)
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        self.optimizer = make_optimizer(self.model, config)
        warmup = int(config.warmup_ratio * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, WarmupSchedule(warmup, self.total_steps, config.schedule))

        # -- position and counters (restored on resume) -----------------------------------------------
        self.step, self.epoch, self.micro = 0, 0, 0
        self.skipped_before = 0  # global count of skipped images before this session (from the checkpoint)
        self.skipped_local = 0  # this rank's count in this session
        self.last_eval: dict[str, Any] | None = None
        self.placeholder: Batch | None = None
        self.eval_loader: Any = None  # built at the first evaluation
        # Losses of the micro-batches since the last train log line (this rank's; saved summed over ranks): summed
        # on the device in float64 (the same IEEE double additions as summing Python floats, so the logged means
        # are bit-identical to reading each loss back), read back only at a log line or a checkpoint.
        self.loss_sums = torch.zeros(len(LOSS_KEYS), dtype=torch.float64, device=self.dist.device)
        self.window: dict[str, int] = {"n": 0, "samples": 0}
        # (micro-batch, its row indices, its loss on the device) of the micro-batches of the current optimizer step:
        # checked for NaN/inf once, with the gradient norm, before the optimizer step (`_check_finite`)
        self.step_losses: list[tuple[int, list[int], torch.Tensor]] = []

    # --- set-up helpers ---------------------------------------------------------------------------------

    def _loader(self, dataset: VQADataset, batch_sampler: Any, collate: VQACollator) -> Any:
        import torch
        from torch.utils.data import DataLoader

        # Its own generator: creating an iterator must not draw from the global RNG, or resuming mid-epoch
        # would shift every later dropout mask. Persistent workers: started once per loader, not at every epoch
        # and evaluation (under the spawn start method, macOS' default, each start re-imports torch and
        # transformers in every worker). The batch sampler stays in this process, so `set_epoch` before each
        # ``iter(loader)`` still selects the order; the workers only decode the rows they are sent. On CUDA the
        # batches are pinned (`Batch.pin_memory`), so the ``non_blocking`` copies to the GPU are asynchronous.
        workers = self.config.num_workers
        return DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate, num_workers=workers,
                          generator=torch.Generator().manual_seed(0), persistent_workers=workers > 0,
                          pin_memory=self.dist.device.type == "cuda")

    @property
    def effective_batch(self) -> int:
        """Samples per optimizer step over all ranks."""
        return self.config.batch_size * self.config.grad_accum * self.dist.world_size

    def _eval_name(self) -> str:
        """``<split> of <sources> (N rows)``: the evaluated set, as the log and the final line name it."""
        if self.eval_set is None:
            return "none"
        sources = self.config.sources or "every source"
        n = len(self.eval_set)
        rows = (f"{n:,} rows" if n == self.eval_rows_total
                else f"{n:,} of {self.eval_rows_total:,} rows, a sample stratified by source and label")
        return f"{self.eval_source} of {sources} ({rows})"

    def check_run_dir(self) -> Path | None:
        """Check the run folder against the settings before anything is loaded; return the checkpoint to
        resume from (or None).

        Raises:
            ResumeError: ``resume=must`` without a checkpoint, ``resume=never`` with one, or settings that
                differ from the saved run's in a way that changes the trained weights.
        """
        from .checkpoint import latest_checkpoint, resumable_checkpoint

        newest = latest_checkpoint(self.run_dir)
        mode = self.config.resume
        if mode == "must" and newest is None:
            raise ResumeError(f"--resume: no checkpoint in {self.run_dir / 'checkpoints'}")
        if mode == "never" and newest is not None:
            raise ResumeError(f"{self.run_dir} already has checkpoints ({newest.name}); choose a new --output or "
                              "resume it")
        ckpt, unreadable = resumable_checkpoint(self.run_dir)
        if unreadable and ckpt is None:
            path, problem = unreadable[0]
            older = f" (and {len(unreadable) - 1} older one(s) too)" if len(unreadable) > 1 else ""
            raise ResumeError(f"{path}: unreadable checkpoint ({problem}){older} and no complete older one to "
                              f"resume from; delete {path.parent} to start the run again")
        for path, problem in unreadable if self.dist.is_main else ():
            logger.warning("checkpoint %s is unreadable (%s; cut off by a crash or a full disk?): resuming from "
                           "the older %s. It is replaced when training reaches step %d again (or delete it).",
                           path, problem, ckpt.name, int(path.name.split("-")[1]))
        saved_cfg = self.run_dir / "config.yaml"
        if ckpt is not None and saved_cfg.is_file():
            diff = resume_differences(read_saved_config(saved_cfg), self.config)
            if diff:
                raise ResumeError(f"cannot resume {self.run_dir}: settings differ from the saved run in "
                                  f"{', '.join(diff)} (see {saved_cfg})")
        return ckpt

    def check_corpus(self, ckpt: Path | None) -> None:
        """Refuse to resume on another corpus than the run started on (``<run>/corpus.json``).

        The corpus is compared by `corpus_fingerprint` (rows per split and a hash of the sources, videos,
        labels and interpretations), not by path: a moved or copied corpus resumes, a different one does not.
        A run folder from before ``corpus.json`` existed resumes and gets one.

        Raises:
            ResumeError: the fingerprint differs from the saved one.
        """
        from .checkpoint import read_json

        path = self.run_dir / "corpus.json"
        if ckpt is None or not path.is_file():
            return
        saved = read_json(path, "delete it and rerun the same command: it is written again from --dataset (the "
                                "corpus is then not compared with the one the run started on)")
        if not isinstance(saved, dict):
            raise ResumeError(f"{path}: not a corpus record (a JSON object); delete it and rerun the same command")
        now = self.corpus_fingerprint
        if saved.get("rows") == now["rows"] and saved.get("sha1") == now["sha1"]:
            if saved.get("dataset") != self.config.dataset:
                logger.info("the corpus moved: %s then, %s now (same fingerprint)", saved.get("dataset"),
                            self.config.dataset)
            return
        rows = ", ".join(f"{k} {v}" for k, v in saved.get("rows", {}).items())
        rows_now = ", ".join(f"{k} {v}" for k, v in now["rows"].items())
        what = (f"rows per split {rows} then, {rows_now} now" if saved.get("rows") != now["rows"]
                else "same rows per split, other videos, labels or interpretations")
        raise ResumeError(f"cannot resume {self.run_dir}: --dataset {self.config.dataset} is not the corpus the run "
                          f"started on ({saved.get('dataset')}; {what}); choose a new --output")

    def finished_summary(self, ckpt: Path | None) -> dict[str, Any] | None:
        """The saved ``summary.json`` when the run folder holds a finished run with these settings, else None.

        Finished: the newest checkpoint is at its run's last step and ``final/`` and ``summary.json`` exist, and the
        weights of ``final/`` are whole (their safetensors headers are read: a ``final/`` cut short by a full disk in
        an older version, or damaged since, is written again from the last checkpoint, with a warning).
        """
        from ifas_model._loading import WeightsUnreadable, check_local_weights

        from .checkpoint import read_json

        summary, final = self.run_dir / "summary.json", self.run_dir / "final"
        if ckpt is None or not summary.is_file() or not (final / "config.json").is_file():
            return None
        try:
            check_local_weights(final, "final model")
        except WeightsUnreadable as err:
            logger.warning("%s; writing final/ again from the last checkpoint", err)
            return None
        state = read_json(ckpt / "trainer_state.json", f"delete {ckpt} to resume from the previous checkpoint")
        if state.get("total_steps") is None or state["step"] < state["total_steps"]:
            return None
        saved = read_json(summary, "delete it and rerun the same command: the final evaluation, final/ and "
                                   "summary.json are written again (nothing is trained again)")
        # "final" is relative to the run folder (older summaries: the absolute path of the time; see `fit`)
        return {**saved, "final": "final", "already_finished": True}

    def prepare_run_dir(self) -> Path | None:
        """Create the run folder, write config.yaml and corpus.json; return the checkpoint to resume from.

        The settings were checked in `check_run_dir` / `check_corpus` when the trainer was built.
        """
        if self.dist.is_main:
            with writing(self.run_dir, self.rerun_advice()):
                self.run_dir.mkdir(parents=True, exist_ok=True)
                write_config(self.config, self.run_dir / "config.yaml")
                record = {"dataset": self.config.dataset, **self.corpus_fingerprint}
                write_text_atomic(self.run_dir / "corpus.json", json.dumps(record, indent=1))
                if self.resume_ckpt is None:  # a fresh start: lines of a session killed before its first checkpoint
                    self._truncate_metrics(0, eval_at_step=False)
        barrier(self.dist)
        return self.resume_ckpt

    def resume_from(self, ckpt: Path) -> None:
        """Restore weights, optimizer, schedule, RNG and the data position from a checkpoint."""
        import torch

        from .checkpoint import load_checkpoint

        kernel = {k: self.optimizer.defaults.get(k) for k in ("fused", "foreach")}  # chosen for this device
        state = load_checkpoint(ckpt, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                rank=self.dist.rank, world_size=self.dist.world_size)
        for group in self.optimizer.param_groups:  # the checkpoint's groups carry the saving device's choice
            group.update(kernel)
        self.step, self.epoch, self.micro = state["step"], state["epoch"], state["micro"]
        self.skipped_before = state.get("skipped_images", 0) if self.dist.is_main else 0
        self.last_eval = state.get("last_eval")
        saved_window = state.get("train_window")  # checkpoints before it was saved: the window starts empty
        if saved_window and self.dist.is_main:  # global sums on rank 0: the next log's all-reduce adds them once
            self.loss_sums.copy_(torch.tensor([float(saved_window[k]) for k in LOSS_KEYS], dtype=torch.float64))
            self.window["n"] = int(saved_window["n"])
        if self.dist.is_main:
            with writing(self.run_dir / "metrics.jsonl", self.rerun_advice()):
                self._truncate_metrics(self.step, eval_at_step=bool(self.last_eval)
                                       and self.last_eval.get("step") == self.step)
        logger.info("resumed from %s (step %d, epoch %d, micro-batch %d)", ckpt, self.step, self.epoch, self.micro)

    def _truncate_metrics(self, step: int, *, eval_at_step: bool) -> None:
        """Keep the metrics lines the checkpoint at ``step`` had seen; the others are written again.

        Kept: lines of earlier steps, and the train line of ``step`` (logged before the checkpoint was saved).
        An evaluation at ``step`` is kept only when the checkpoint holds it (``eval_at_step``): the final
        evaluation runs after the last checkpoint, in `finish`, and runs again after a resume. ``step`` 0 (a fresh
        start) empties the file. ``metrics.jsonl`` is a log: a line that is not a JSON object (the last one, torn by a kill in mid-write)
        is dropped with a warning instead of blocking the resume.
        """
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return
        keep, torn = [], []
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                torn.append(number)
            elif record.get("step", 0) < step or (record.get("step", 0) == step and step > 0
                                                     and (record.get("split") != "eval" or eval_at_step)):
                keep.append(line)
        if torn:
            logger.warning("%s: line(s) %s not JSON (cut off by a kill?); dropped", path,
                           ", ".join(map(str, torn[:5])) + (" ..." if len(torn) > 5 else ""))
        write_text_atomic(path, "".join(line + "\n" for line in keep))

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``<run>/metrics.jsonl`` (rank 0 only)."""
        if self.dist.is_main:
            with writing(self.run_dir / "metrics.jsonl", self.rerun_advice()):
                self.run_dir.mkdir(parents=True, exist_ok=True)
                with (self.run_dir / "metrics.jsonl").open("a") as f:
                    f.write(json.dumps(record) + "\n")

    # --- what a full disk leaves, and how much space the run's files take ---------------------------------------

    def rerun_advice(self, *, finishing: bool = False) -> str:
        """What is kept and what to do after a failed write, for `checkpoint.writing` (``{remedy}`` is filled
        in there: "free space", or "make the disk writable again")."""
        latest = latest_checkpoint(self.run_dir)
        if finishing and latest is not None:
            return (f"training is done and its last checkpoint {latest} is kept: {{remedy}} (final/ takes about "
                    f"{human_size(self.final_bytes())}) and rerun the same command: it writes final/ only, nothing is "
                    "trained again")
        if latest is None:
            return ("no checkpoint was finished yet: {remedy} and rerun the same command (it starts again at step 0; "
                    f"a checkpoint of this run takes about {human_size(self.checkpoint_bytes())})")
        return (f"the finished checkpoints are kept (newest: {latest}): {{remedy}} (a checkpoint of this run takes "
                f"about {human_size(self.checkpoint_bytes())}) and rerun the same command: it resumes from there")

    def checkpoint_bytes(self) -> int:
        """About the size of one checkpoint: the trainable parameters and AdamW's two moments per parameter
        (same dtype), RNG and JSON files aside (kilobytes)."""
        return sum(3 * p.numel() * p.element_size() for p in self.model.parameters() if p.requires_grad)

    def final_bytes(self) -> int:
        """About the size of ``final/``, as `merge_for_save` writes it: a LoRA layer's base weight merged in fp32
        (its adapters gone), other 4-bit (uint8-packed, two values per element) weights dequantized to the
        embeddings' dtype, every other parameter in its dtype (the processor files are small)."""
        import torch

        embed = self.model.language_model.get_input_embeddings().weight.element_size()
        total = 0
        for name, p in self.model.named_parameters():
            values = p.numel() * (2 if p.dtype == torch.uint8 else 1)
            if ".lora_" in name:
                continue
            if name.endswith("base_layer.weight"):
                total += values * 4
            else:
                total += values * (embed if p.dtype == torch.uint8 else p.element_size())
        return total

    def banner(self, resumed_from: Path | None) -> None:
        """Print the resolved configuration and the derived figures once (rank 0)."""
        if not self.dist.is_main:
            return
        from rich.table import Table

        table = Table(title="ifas-train", show_header=False, box=None, pad_edge=False)
        for key, value in self.config.to_dict().items():
            note = self.config.learning_rate_note if key == "learning_rate" else ""
            table.add_row(key, f"{value} ({note.partition(': ')[2]})" if note else str(value))
        derived = {
            "device": f"{self.dist.device} x {self.dist.world_size} process(es)",
            "precision": ("bf16 autocast; trainable weights fp32, frozen weights bf16"
                          if self.autocast_dtype is not None else "fp32"),
            "effective batch": f"{self.effective_batch} (= {self.config.batch_size} x {self.config.grad_accum} "
                               f"accumulation x {self.dist.world_size} processes)",
            "trainable parameters": f"{self.counts['trainable']:,}",
            "frozen parameters": f"{self.counts['frozen']:,}",
            "training rows": f"{len(self.train_set):,}",
            "evaluation": self.eval_name,
            "steps": f"{self.total_steps:,} ({self.steps_per_epoch:,} per epoch)",
            "resumed from": str(resumed_from) if resumed_from else "-",
        }
        for key, value in derived.items():
            table.add_row(f"[bold]{key}[/]", value)
        self.console.print(table)

    # --- the loop -----------------------------------------------------------------------------------------

    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``total_steps`` (resuming if the run folder has a checkpoint), then `finish`.

        Args:
            stop_after: stop cleanly after this optimizer step, with a checkpoint, without finishing (for time-
                limited jobs; the next call resumes). None trains to the end.

        Returns:
            The summary (also written to ``<run>/summary.json``); ``{"stopped_at": step}`` when stopped early;
            the saved summary with ``already_finished: True`` when the run folder holds the finished run.

        Raises:
            NonFiniteLossError: NaN/inf loss or gradient norm; the last good checkpoint is kept.
        """
        if self.finished is not None:
            # this run folder's own final/, wherever the folder is now: summary.json's "final" may name the place
            # the run had when it finished (older versions wrote an absolute path), before a move or copy
            final = self.run_dir / "final"
            if self.dist.is_main:
                self.console.print(f"[bold green]already finished[/]: {self.run_dir} ran its "
                                   f"{self.finished.get('steps')} steps; the model is in {final} (use a new "
                                   "--output to train again)")
            repo = self.config.push_to_hub
            if repo and not _pushed_to(self.finished, repo):  # a failed (or new) push: retry it, nothing else
                summary = {k: v for k, v in self.finished.items() if k != "already_finished"}
                self._push_and_record(final, summary)
                self.finished = {**summary, "already_finished": True}
            return self.finished
        ckpt = self.prepare_run_dir()
        if ckpt is not None:
            self.resume_from(ckpt)
        self.banner(ckpt)
        self.ddp.train()
        window = self.window
        t_window = time.perf_counter()
        with self._progress() as progress:
            task = progress.add_task("training", total=self.total_steps, completed=self.step, loss=float("nan"),
                                     rate=0.0)
            while self.step < self.total_steps:
                self.sampler.set_epoch(self.epoch, start=self.micro)
                batches = iter(self.loader)
                epoch_done = False
                while not epoch_done and self.step < self.total_steps:
                    n_group = min(self.config.grad_accum, self.micro_per_epoch - self.micro)
                    for j in range(n_group):
                        self._forward_backward(next(batches), n_group, sync=j == n_group - 1, micro=self.micro + j)
                    self._check_finite()  # before anything of this step is applied
                    self.micro += n_group
                    self._optimizer_step()
                    if self.micro >= self.micro_per_epoch:  # (epoch, micro) always names the next micro-batch
                        self.epoch, self.micro, epoch_done = self.epoch + 1, 0, True
                    if self.step % self.config.log_every == 0 or self.step == self.total_steps:
                        t_window = self._log_train(window, t_window, progress, task)
                    progress.update(task, completed=self.step)
                    if self.config.eval_every and self.step % self.config.eval_every == 0 \
                            and self.step < self.total_steps:
                        self.evaluate()
                    last = self.step == self.total_steps or self.step == stop_after
                    if last or (self.config.save_every and self.step % self.config.save_every == 0):
                        self.save()
                    if self.step == stop_after and self.step < self.total_steps:
                        progress.stop()  # the line below comes after the bar, as the run's last line
                        if self.dist.is_main:
                            self.console.print(
                                f"[bold yellow]stopped[/] at step {self.step} of {self.total_steps} by "
                                f"--stop-after-steps, checkpoint {checkpoint_dir(self.run_dir, self.step)}; "
                                "rerun the same command to continue from there", soft_wrap=True)
                        return {"stopped_at": self.step}
                del batches
        return self.finish()

    def _progress(self) -> Any:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.1f} samples/s"),
                        TimeRemainingColumn(), console=self.console, disable=not self.dist.is_main)

    def _placeholder_batch(self) -> Batch:
        """A one-row batch (black image, answer "No") used with weight 0 when every row of a micro-batch
        failed to decode, so that every rank still runs forward/backward and DDP stays in step."""
        if self.placeholder is None:
            from PIL import Image

            from scf.schema import JUDGMENT_FAKE

            collate = VQACollator(self.processor)
            self.placeholder = collate([{"index": -1, "image": Image.new("RGB", (224, 224)), "label": 0,
                                         "judgment": JUDGMENT_FAKE, "interpretation": "", "video_id": "-"}])
        return self.placeholder

    def _forward_backward(self, batch: Batch, n_group: int, *, sync: bool, micro: int) -> None:
        """Forward and backward one micro-batch (number ``micro`` of the epoch), its loss scaled by 1 / micro-
        batches in the step.

        Nothing is read back from the device: the batch is copied ``non_blocking`` (pinned on CUDA), the losses are
        added to `loss_sums` on the device and the loss is kept for `_check_finite`.
        """
        import contextlib

        import torch

        self.skipped_local += batch.skipped
        weight = 1.0 / n_group
        if len(batch) == 0:
            batch, weight = self._placeholder_batch(), 0.0
        inputs = {k: v.to(self.dist.device, non_blocking=True) for k, v in batch.inputs.items()}
        no_sync = self.ddp.no_sync() if (self.dist.distributed and not sync) else contextlib.nullcontext()
        with no_sync:
            with torch.autocast(self.dist.device.type, dtype=self.autocast_dtype or torch.float32,
                                enabled=self.autocast_dtype is not None):
                out = self.ddp(**inputs)
            loss = out.loss
            (loss * weight).backward()
        loss = loss.detach()
        self.step_losses.append((micro, batch.indices, loss))
        if not weight:  # the placeholder: checked for NaN/inf, not reported
            return
        zero = loss.new_zeros((), dtype=torch.float64)
        parts = [loss] + [getattr(out, k).detach() if getattr(out, k, None) is not None else zero
                          for k in LOSS_KEYS[1:]]
        self.loss_sums += torch.stack([p.to(torch.float64) for p in parts])
        self.window["n"] += 1
        self.window["samples"] += len(batch)

    def _check_finite(self) -> None:
        """Stop on a NaN/inf loss of this step's micro-batches or a NaN/inf gradient norm (any rank), before the
        optimizer step: one read-back (and, with several processes, one all-reduce) per optimizer step.

        The gradient is clipped here (``--max-grad-norm``), as before the step.
        """
        import torch

        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.config.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([p.grad.detach().float().norm() for p in params if p.grad is not None]))
        steps, self.step_losses = self.step_losses, []
        losses = torch.stack([loss.float() for _, _, loss in steps])
        flags = torch.stack([(~torch.isfinite(losses)).any(), ~torch.isfinite(norm.detach())]).to(torch.float64)
        if self.dist.distributed:
            import torch.distributed as dist

            dist.all_reduce(flags, op=dist.ReduceOp.SUM)
        bad_loss, bad_norm = flags.tolist()  # the one read-back of the step
        if bad_loss:  # name this rank's first bad micro-batch; a rank that has none says another rank had it
            values = losses.tolist()
            k = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
            if k is None:
                self._stop_non_finite("loss", float("nan"), steps[-1][0], None, elsewhere=True)
            self._stop_non_finite("loss", values[k], steps[k][0], steps[k][1])
        if bad_norm:
            self._stop_non_finite("gradient norm", float(norm), steps[0][0], None)

    def _optimizer_step(self) -> None:
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

    def _stop_non_finite(self, what: str, value: float, micro: int, rows: list[int] | None, *,
                         elsewhere: bool = False) -> None:
        from .checkpoint import latest_checkpoint

        good = latest_checkpoint(self.run_dir)
        named = f", rows {rows[:8]}" if rows else ""
        if elsewhere:
            place = f"at step {self.step + 1} (epoch {self.epoch}) on another process (this one's were finite)"
        else:
            place = f"({value}) at step {self.step + 1} (epoch {self.epoch}, micro-batch {micro}{named})"
        message = f"non-finite {what} {place}; stopped. Last good checkpoint: {good or 'none'}"
        self.log_metrics({"event": "non_finite", "what": what, "step": self.step + 1, "epoch": self.epoch,
                          "micro_batch": micro, "last_good_checkpoint": str(good) if good else None})
        raise NonFiniteLossError(message)

    def skipped_images(self) -> int:
        """Training images skipped so far (all ranks, this and earlier sessions)."""
        return int(self.skipped_before + all_reduce_sum(self.dist, [float(self.skipped_local)])[0])

    def _log_train(self, window: dict[str, Any], t_window: float, progress: Any, task: Any) -> float:
        n, samples, *sums = all_reduce_sum(self.dist, [float(window["n"]), float(window["samples"]),
                                                       *self.loss_sums.tolist()])  # the read-back of the window
        now = time.perf_counter()
        rate = samples / max(now - t_window, 1e-9)
        record = {"step": self.step, "epoch": self.epoch, "split": "train", "loss": sums[0] / max(n, 1),
                  "loss_judgment": sums[1] / max(n, 1), "loss_interpretation": sums[2] / max(n, 1),
                  "lr": self.scheduler.get_last_lr()[0], "samples_per_s": rate,
                  "skipped_images": self.skipped_images()}
        self.log_metrics(record)
        progress.update(task, loss=record["loss"], rate=rate)
        for key in window:
            window[key] = 0
        self.loss_sums.zero_()
        return now

    # --- evaluation, checkpoints, the end -------------------------------------------------------------------

    def evaluate(self) -> dict[str, Any] | None:
        """Loss, AUC and HTER (FLIP/SSDG convention, `ifas_model.metrics.flip_metrics`) on the eval rows.

        Every rank scores its shard; rank 0 computes the metrics on the gathered, de-duplicated scores.
        """
        import torch

        if self.eval_set is None:
            return None
        from ifas_model.metrics import flip_metrics

        if self.eval_loader is None:  # one loader for every evaluation of the run (its workers persist)
            sampler = ResumableBatchSampler(len(self.eval_set), self.config.batch_size, shuffle=False,
                                            rank=self.dist.rank, world_size=self.dist.world_size)
            self.eval_loader = self._loader(self.eval_set, sampler, VQACollator(self.processor, with_prompts=True))
        loader = self.eval_loader
        self.model.eval()
        # Each batch's pixels are processed once and copied to the device once (for the loss and the score); the
        # loss sum (float64: the same additions as in Python floats) and the scores stay on the device until the
        # last batch, so nothing waits for the GPU inside the loop.
        device = self.dist.device
        loss_sum_t = torch.zeros((), dtype=torch.float64, device=device)
        loss_n, skipped, rows, scores = 0, 0, [], []
        with torch.no_grad(), torch.autocast(device.type, dtype=self.autocast_dtype or torch.float32,
                                             enabled=self.autocast_dtype is not None):
            for batch in loader:
                skipped += batch.skipped
                if not len(batch):
                    continue
                inputs = {k: v.to(device, non_blocking=True) for k, v in batch.inputs.items()}
                out = self.model(**inputs)
                loss_sum_t += out.loss.detach().to(torch.float64) * len(batch)
                loss_n += len(batch)
                prompt = {k: v.to(device, non_blocking=True) for k, v in batch.prompt_inputs.items()}
                scores.append(self.model.score(pixel_values=inputs["pixel_values"], **prompt).float())
                rows += list(zip(batch.indices, batch.labels, batch.video_ids, strict=True))
        self.model.train()
        loss_sum = float(loss_sum_t)
        values = torch.cat(scores).cpu().tolist() if scores else []
        rows = [(i, score, label, video) for (i, label, video), score in zip(rows, values, strict=True)]
        loss_sum, loss_n, skipped = all_reduce_sum(self.dist, [loss_sum, float(loss_n), float(skipped)])
        rows = gather_lists(self.dist, rows)
        unique = {r[0]: r for r in rows}.values()  # wrap-around padding repeats rows in multi-process runs
        record: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "split": "eval", "source": self.eval_source,
                                  "eval_set": self.eval_name, "loss": loss_sum / max(loss_n, 1),
                                  "n_rows": len(unique), "skipped_images": int(skipped)}
        labels = {r[2] for r in unique}
        if len(labels) < 2:  # AUC and HTER need both classes: say so in words, the loss is still reported
            what = ("no row" if not labels else
                    f"only {'real faces' if labels == {1} else 'attacks'} (label {labels.pop()})")
            record["metrics_error"] = f"AUC/HTER not computed: the evaluated rows hold {what}"
        else:
            try:
                m = flip_metrics([r[1] for r in unique], [r[2] for r in unique], [r[3] for r in unique],
                                 name=self.eval_source)
                record.update({k: m[k] for k in ("auc", "hter", "eer", "threshold", "tpr_at_fpr_1pct", "n_samples")})
            except ValueError as err:  # e.g. one class after video averaging: the loss is still reported
                record["metrics_error"] = f"AUC/HTER not computed: {err}"
        self.log_metrics(record)
        if self.dist.is_main:
            logger.info("eval step %d on %s: loss %.4f, %s", self.step, self.eval_name, record["loss"],
                        describe_metrics(record))
        self.last_eval = record
        return record

    def save(self) -> Path:
        """Write a resumable checkpoint at the current step."""
        from .checkpoint import save_checkpoint

        skipped = self.skipped_images()
        *sums, n = all_reduce_sum(self.dist, [*self.loss_sums.tolist(), float(self.window["n"])])
        window = {**dict(zip(LOSS_KEYS, sums, strict=True)), "n": int(n)}
        state = {"epoch": self.epoch, "micro": self.micro, "skipped_images": skipped, "last_eval": self.last_eval,
                 "total_steps": self.total_steps, "train_window": window}
        folder = checkpoint_dir(self.run_dir, self.step)
        with writing(folder.with_name(folder.name + ".tmp"), self.rerun_advice()):
            return save_checkpoint(self.run_dir, self.step, model=self.model, optimizer=self.optimizer,
                                   scheduler=self.scheduler, trainer_state=state, rank=self.dist.rank,
                                   world_size=self.dist.world_size,
                                   barrier=(lambda: barrier(self.dist)) if self.dist.distributed else None,
                                   keep=self.config.keep_checkpoints)

    def finish(self) -> dict[str, Any]:
        """Final evaluation, ``<run>/final`` (LoRA merged, loadable with one ``from_pretrained``), model card,
        ``summary.json`` and the optional push. Returns the summary.

        ``summary.json`` records ``final`` relative to the run folder (``"final"``, so a moved or copied run
        folder still names its own model) and ``versions``: the software of the session that wrote ``final/``
        (`scf.schema.software_versions` plus `PROVENANCE_EXTRA`), also listed in the model card. The versions
        are not in ``config.yaml``, which a resume compares: a run resumes after a library upgrade."""
        from ifas_model.adapters import merge_for_save
        from scf.schema import software_versions

        from .card import local_paths_hidden, model_card

        final_eval = self.evaluate() if (self.last_eval is None or self.last_eval["step"] != self.step) \
            else self.last_eval
        skipped = self.skipped_images()
        versions = software_versions(extra=PROVENANCE_EXTRA)
        summary = {"steps": self.step, "epochs_completed": self.epoch, "effective_batch": self.effective_batch,
                   "parameters": self.counts, "skipped_images": skipped, "eval": final_eval,
                   "final": "final", "versions": versions}
        if self.dist.is_main:
            final, tmp = self.run_dir / "final", self.run_dir / "final.tmp"
            # written complete under final.tmp/ and renamed, as checkpoints are: a full disk or a kill never leaves
            # a final/ that looks like a model with a cut-short model.safetensors
            with writing(tmp, self.rerun_advice(finishing=True)):  # advice (and sizes) taken before the merge
                shutil.rmtree(tmp, ignore_errors=True)
                try:
                    merged = merge_for_save(self.model)
                    with local_paths_hidden(merged.config):  # config.json is published with --push-to-hub
                        merged.save_pretrained(tmp)
                    self.processor.save_pretrained(tmp)
                    base = base_models(self.config)
                    card = model_card(self.config.to_dict(), eval_metrics=final_eval, eval_source=self.eval_name,
                                      base_models=base, parameter_counts=self.counts, steps=self.step,
                                      skipped_images=skipped, versions=versions)
                    (tmp / "README.md").write_text(card)
                    fsync_files(tmp)
                    replace_dir(tmp, final)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)  # the space it holds is what the rerun needs
                    raise
            with writing(self.run_dir / "summary.json", self.rerun_advice(finishing=True)):
                write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=1))
            self.console.print(f"[bold green]done[/]: {self.step} steps, skipped images {skipped}, "
                               + (f"eval on {self.eval_name}: {describe_metrics(final_eval)}, " if final_eval
                                  else "")
                               + f"model in {final}")
        barrier(self.dist)
        if self.config.push_to_hub:
            self._push_and_record(self.run_dir / "final", summary)
        return summary

    def _push_and_record(self, final: Path, summary: dict[str, Any]) -> None:
        """Push ``final/`` to ``--push-to-hub`` (rank 0) and record ``hub_repo`` / ``hub_commit`` in summary.json.

        ``final/`` and ``summary.json`` are already written, so a failed push loses nothing: rerunning the same
        command finds the run finished and only retries the push.

        Raises:
            PushError: the upload failed (network, token, permissions), with the cause and how to retry.
        """
        from .card import push_to_hub

        if not self.dist.is_main:
            return
        repo = self.config.push_to_hub
        try:
            commit = push_to_hub(final, repo, private=self.config.hub_private)
        except Exception as err:  # noqa: BLE001 - any failure of the upload becomes one line; the run is kept
            logger.debug("push to %s failed", repo, exc_info=True)
            raise PushError(f"push to {repo} failed: {type(err).__name__}: {' '.join(str(err).split())}; the model "
                            f"is saved in {final} and the summary in {self.run_dir / 'summary.json'}: rerun the "
                            "same command to retry the push (nothing is trained again)") from err
        summary.update(hub_repo=repo, hub_commit=commit)
        with writing(self.run_dir / "summary.json", f"the model is saved in {final} and pushed to {repo} "
                     f"(commit {commit}); only summary.json does not record the push yet: {{remedy}} and rerun the "
                     "same command (it pushes again)"):
            write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=1))
