"""Fine-tuning the general captioner C_G on the spoof-aware set D_S into C_S (paper, Algorithm 1 line 10).

The paper gives no recipe; ours is after LAVIS ``caption_coco_ft`` (salesforce/LAVIS
``lavis/projects/blip2/train/caption_coco_ft.yaml`` with the model config
``lavis/configs/models/blip2/blip2_caption_opt2.7b.yaml``): AdamW, lr 1e-5, weight decay 0.05, linear warm-up
then cosine decay to 0, 5 epochs, prompt "a photo of", at most 30 caption tokens, the loss on the caption and
end tokens only (image tokens, BOS, prompt and padding are ``-100``). Trained: the Q-Former, its query tokens
and the language projection; frozen: the vision encoder and the LLM, which also run in eval mode (no dropout).
Optional (``lora_r > 0``): LoRA adapters (peft) on the LLM's attention ``q_proj``/``v_proj``, merged into the
weights before saving, so the result is a plain BLIP-2 checkpoint.

Departures from LAVIS caption_coco_ft, each our choice:

- the ViT is frozen and runs in eval mode (LAVIS trains it: ``freeze_vit: False``, in fp32); a small D_S
  and a frozen tower keep C_S close to C_G;
- images at the processor's 224 px (LAVIS fine-tunes at ``image_size: 364``);
- no train-time augmentation (LAVIS uses ``blip_image_train``: RandomResizedCrop scale 0.5-1, horizontal
  flip, RandomAugment);
- batch 16 in total, on one device (LAVIS: ``batch_size_train: 16`` per GPU, distributed);
- the end token: every target ends with the token the model's ``generate`` stops on
  (`scf.captioning.captioner.generation_end_id`: ``"\n"``, id 50118, for ``Salesforce/blip2-opt-2.7b``, which
  LAVIS's ``blip2_opt.py`` appends to every caption), not the tokenizer's ``</s>``; otherwise C_S would
  learn to end with a token that generation does not stop on, and run on to the token budget. The id is
  recorded in ``scf_finetune.json`` (``end_token_id``, ``end_token``);
- the warm-up is ``min(warmup_steps, 10% of all steps)``, because D_S can be far smaller than COCO (LAVIS
  warms up 1000 steps);
- on GPU the step runs under bf16 autocast with the trained parts (Q-Former, queries, projection, LoRA)
  held in fp32, and the frozen vision encoder and LLM stored in bf16 (LAVIS holds the frozen OPT in fp16 and
  trains the ViT in fp32): half the memory of fp32, and no per-step cast. The saved C_S therefore holds
  its frozen towers in bf16;
- gradients are clipped at norm 1.

Fault tolerance: every ``checkpoint_every`` steps the trainable weights (safetensors), the optimizer state
(its tensors in ``optimizer.safetensors``, the rest in ``optimizer.json``: nothing is pickled or unpickled) and
the step are written atomically; a restarted run resumes from
the last checkpoint with the same data order (the epoch's permutation is a function of seed and epoch).
Dropout randomness after a resume differs from an uninterrupted run. The result is saved with
``save_pretrained`` (safetensors) with the processor, so ``Blip2ForConditionalGeneration.from_pretrained``
loads it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

logger = logging.getLogger(__name__)


class FinetuneCheckpointError(ValueError):
    """A fine-tuning checkpoint cannot be read (the message names the folder and what to do)."""

TRAINABLE_PREFIXES = ("qformer.", "query_tokens", "language_projection.")
"""Parameters trained by default: the Q-Former, its learned queries and the projection to the LLM."""
CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
FINETUNE_RECORD = "scf_finetune.json"
OPTIMIZER_STEM = "optimizer"
"""In each checkpoint: ``optimizer.safetensors`` (the optimizer's tensors) and ``optimizer.json`` (the rest)."""
RNG_STEM = "rng"
"""In each checkpoint: ``rng.safetensors`` + ``rng.json``, the torch/numpy/Python RNG states (`scf.tensortree`)."""
LEGACY_OPTIMIZER = "optimizer.pt"
"""The pickled optimizer state of checkpoints written by earlier scf versions: refused, never read."""


@dataclass(frozen=True)
class FinetuneConfig:
    """The C_S fine-tuning recipe (defaults after LAVIS caption_coco_ft; see the module docstring)."""

    learning_rate: float = 1e-5
    weight_decay: float = 0.05
    epochs: int = 5
    batch_size: int = 16
    warmup_steps: int = 1000
    """Linear warm-up length, capped at 10% of all steps."""
    max_caption_tokens: int = 30
    grad_clip: float = 1.0
    lora_r: int = 0
    """0 = LLM frozen (default); > 0 = LoRA of this rank on the LLM's q_proj and v_proj."""
    lora_alpha: int = 16
    checkpoint_every: int = 200
    """Optimizer steps between checkpoints."""
    seed: int = 0
    precision: str = "auto"
    """``auto`` (bf16 on CUDA, fp32 elsewhere), ``bf16`` (autocast; frozen weights bf16, trained ones fp32) or
    ``fp32``."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "checkpoint_every", "max_caption_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.lora_r < 0 or self.warmup_steps < 0:
            raise ValueError("lora_r and warmup_steps must be >= 0")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")


def lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up to 1 over ``min(warmup_steps, total_steps // 10)`` steps, then cosine to 0."""
    warm = min(warmup_steps, total_steps // 10)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def mark_trainable(model: torch.nn.Module, config: FinetuneConfig) -> tuple[int, int]:
    """Freeze everything but the trained parts; return (trainable, frozen) parameter counts."""
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(TRAINABLE_PREFIXES) or (config.lora_r > 0 and "lora_" in name)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trainable, frozen


def set_finetune_dtypes(model: torch.nn.Module, frozen_dtype: torch.dtype | None) -> None:
    """Trained parameters in fp32 (AdamW's master weights: lr 1e-5 updates vanish in bf16), frozen floating-point
    ones in ``frozen_dtype`` (None = fp32). Run after `mark_trainable`."""
    import torch

    for p in model.parameters():
        if p.is_floating_point():
            target = torch.float32 if p.requires_grad else (frozen_dtype or torch.float32)
            if p.dtype != target:
                p.data = p.data.to(target)


def build_batch(processor: Blip2Processor, images: Sequence[Image.Image], captions: Sequence[str], prompt: str,
                max_caption_tokens: int, *, end_token_id: int) -> dict[str, torch.Tensor]:
    """Model inputs for caption training: ``[image tokens, BOS, prompt, caption, END]``, right-padded.

    Args:
        processor: the captioner's processor.
        images: one image per caption.
        captions: the targets; each is cut to ``max_caption_tokens`` tokens before the end token.
        prompt: the text the captions continue (trailing whitespace dropped).
        max_caption_tokens: the caption token budget.
        end_token_id: the token that ends every target: the one the model's ``generate`` stops on
            (`scf.captioning.captioner.generation_end_id`; ``"\n"`` for BLIP-2-OPT), so that C_S stops there.

    Returns:
        ``pixel_values``, ``input_ids``, ``attention_mask`` and ``labels``; ``labels`` equal ``input_ids`` on
        the caption and end tokens and ``-100`` everywhere else, so the loss is on the caption tokens only.
    """
    import torch

    tok = processor.tokenizer
    prompt = prompt.rstrip()
    enc = processor(images=[im.convert("RGB") for im in images], text=[prompt] * len(images), return_tensors="pt")
    head = enc["input_ids"]  # (B, num_query_tokens + 1 + P): identical rows
    lead = " " if prompt else ""
    tails = [tok(lead + c.strip(), add_special_tokens=False)["input_ids"][:max_caption_tokens] + [int(end_token_id)]
             for c in captions]
    width = head.shape[1] + max(len(t) for t in tails)
    input_ids = torch.full((len(images), width), tok.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for i, tail in enumerate(tails):
        n = head.shape[1] + len(tail)
        input_ids[i, : head.shape[1]] = head[i]
        input_ids[i, head.shape[1] : n] = torch.tensor(tail)
        attention_mask[i, :n] = 1
        labels[i, head.shape[1] : n] = torch.tensor(tail)
    return {"pixel_values": enc["pixel_values"], "input_ids": input_ids, "attention_mask": attention_mask,
            "labels": labels}


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _latest_checkpoint(folder: Path) -> Path | None:
    done = sorted(p for p in folder.glob("step-*") if (p / "state.json").exists())
    return done[-1] if done else None


def _save_checkpoint(folder: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     losses: list[float]) -> None:
    from safetensors.torch import save_file

    from ..tensortree import rng_state, save_tree

    final = folder / f"step-{step:08d}"
    tmp = folder / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_file(_trainable_state(model), str(tmp / "trainable.safetensors"))
        save_tree(optimizer.state_dict(), tmp / OPTIMIZER_STEM)
        save_tree(rng_state(), tmp / RNG_STEM)  # dropout masks after a resume are those of an uninterrupted run
        (tmp / "state.json").write_text(json.dumps({"step": step, "losses": losses}), encoding="utf-8")
    except BaseException:  # a full disk (safetensors raises SafetensorError): no partial checkpoint left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(folder.glob("step-*"))[:-2]:  # keep the two newest
        shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, list[float]]:
    """Restore a fine-tuning checkpoint; an unreadable one (truncated by a crash) raises naming the folder.

    A checkpoint of an earlier scf (its optimizer state in a pickle, ``optimizer.pt``) is refused without being
    read: the message says to delete the checkpoints folder (C_S is then fine-tuned from the start).
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..tensortree import load_tree, set_rng_state

    if (path / LEGACY_OPTIMIZER).exists() and not (path / f"{OPTIMIZER_STEM}.json").exists():
        raise FinetuneCheckpointError(
            f"{path}: a fine-tuning checkpoint of an earlier scf version (its optimizer state is a pickle, "
            f"{LEGACY_OPTIMIZER}, which this version does not read); delete the folder {path.parent} and rerun: "
            "C_S is fine-tuned from the start")

    def unreadable(e: BaseException) -> FinetuneCheckpointError:
        older = sorted(p for p in path.parent.glob("step-*") if p != path and p.name < path.name)
        then = f"C_S resumes from {older[-1].name}" if older else "C_S is fine-tuned from the start"
        text = " ".join(str(e).split())[:300]
        return FinetuneCheckpointError(f"{path}: unreadable fine-tuning checkpoint ({type(e).__name__}: {text}); "
                                       f"delete that folder and rerun: {then}")

    try:
        state = load_file(str(path / "trainable.safetensors"))
        optimizer_state = load_tree(path / OPTIMIZER_STEM)
        if not isinstance(optimizer_state, dict) or not {"state", "param_groups"} <= optimizer_state.keys():
            raise ValueError(f"{OPTIMIZER_STEM}.json holds no optimizer state")
        meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
        step, losses = int(meta["step"]), list(meta["losses"])
        # Checkpoints of scf 0.1.0 before RNG states were saved resume without it (only dropout then differs).
        rng = load_tree(path / RNG_STEM) if (path / f"{RNG_STEM}.json").exists() else None
    except (SafetensorError, OSError, RuntimeError, ValueError, KeyError, TypeError, IndexError, EOFError) as e:
        # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise unreadable(e) from e
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    if missing or any(n not in params for n in state):
        raise RuntimeError(f"checkpoint {path} does not match the model's trainable parameters "
                           f"(e.g. {(missing or list(state))[0]}); delete it or use another --out")
    try:
        optimizer.load_state_dict(optimizer_state)
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError, AttributeError) as e:
        raise unreadable(e) from e
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t)
    if rng is not None:
        try:
            set_rng_state(rng)
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError, AttributeError) as e:
            raise unreadable(e) from e
    return step, losses


def _read_metrics(path: Path, up_to_step: int) -> list[str]:
    """The lines of ``metrics.jsonl`` up to a step; a torn or bad line (it is a log) is dropped with a warning."""
    kept = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            step = int(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            logger.warning("%s:%d: not a metrics record (a torn write?); dropped", path, n)
            continue
        if step <= up_to_step:
            kept.append(line)
    return kept


def finetune_captioner(model: Blip2ForConditionalGeneration, processor: Blip2Processor,
                       load_images: Callable[[Sequence[int]], list[Image.Image]], captions: Sequence[str],
                       config: FinetuneConfig, work_dir: str | Path, *, prompt: str = "a photo of",
                       show_progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``model`` in place on (image, caption) pairs; resumable from checkpoints in ``work_dir``.

    Args:
        model: C_G, in fp32 (the trained parts are updated in place; with LoRA the adapters are merged).
        processor: its processor.
        load_images: returns the images of the given sample indices (0 .. len(captions) - 1).
        captions: the target caption of each sample (T_F of D_S).
        config: the recipe.
        work_dir: where ``checkpoints/`` and ``metrics.jsonl`` go.
        prompt: the prompt the captions continue (the same one C_S is decoded with).
        show_progress: draw a rich progress bar.

    Returns:
        A record: steps, first/last losses, trainable/frozen counts, the config, the end token appended to
        every target (``end_token_id``, ``end_token``: see `build_batch`). The returned model is
        ``model`` itself unless LoRA was used, in which case use ``record["model"]`` (the merged model).
    """
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not captions:
        raise ValueError("no training samples: the spoof-aware set D_S is empty")
    work = Path(work_dir)
    ckpt_dir = work / CHECKPOINTS_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    from scf.captioning.captioner import generation_end_id

    end_token_id = generation_end_id(model, processor.tokenizer)
    if config.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.05,
                          target_modules=r".*language_model.*\.(q_proj|v_proj)")
        model = get_peft_model(model, lora)
    trainable, frozen = mark_trainable(model, config)
    autocast = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    set_finetune_dtypes(model, torch.bfloat16 if autocast else None)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(captions) / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total, config.warmup_steps))
    step, losses = 0, []
    latest = _latest_checkpoint(ckpt_dir)
    if latest is not None:
        step, losses = _load_checkpoint(latest, model, optimizer)
        with warnings.catch_warnings():  # fast-forwarding the schedule: no optimizer step is meant here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(step):
                scheduler.step()
        logger.info("resuming fine-tuning from %s (step %d of %d)", latest, step, total)
    metrics_path = work / METRICS_FILE
    if metrics_path.exists():  # drop the lines of steps after the checkpoint (all, from the start): they are redone
        kept = _read_metrics(metrics_path, step)
        from scf.shards import write_text_atomic

        write_text_atomic(metrics_path, "".join(ln + "\n" for ln in kept))  # a full disk keeps the old file
    logger.info("C_S targets end with token %d (%r), the token the model's generate stops on", end_token_id,
                processor.tokenizer.decode([end_token_id]))
    logger.info("fine-tuning C_S: %d samples, %d steps (%d epochs x %d), batch %d, trainable %s, frozen %s",
                len(captions), total, config.epochs, steps_per_epoch, config.batch_size, f"{trainable:,}",
                f"{frozen:,}")
    model.train()
    for name, module in model.named_modules():
        # Frozen towers run in eval mode (no dropout), so their features stay fixed (LAVIS does this for a frozen
        # ViT, ``freeze_vit: True``; caption_coco_ft trains its ViT instead, see the module docstring).
        if name.endswith(("vision_model", "language_model")) and not any(p.requires_grad for p in module.parameters()):
            module.eval()
    metrics = (work / METRICS_FILE).open("a", encoding="utf-8")
    progress = Progress(TextColumn("fine-tune C_S"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                        TimeRemainingColumn(), disable=not show_progress)
    try:
        with progress:
            task = progress.add_task("fine-tune", total=total, completed=step, loss="-")
            while step < total:
                epoch, offset = divmod(step, steps_per_epoch)
                order = torch.randperm(len(captions), generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
                idx = order[offset * config.batch_size : (offset + 1) * config.batch_size].tolist()
                batch = build_batch(processor, load_images(idx), [captions[i] for i in idx], prompt,
                                    config.max_caption_tokens, end_token_id=end_token_id)
                batch = {k: v.to(device) for k, v in batch.items()}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss = model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                loss_value = loss.item()
                losses.append(loss_value)
                metrics.write(json.dumps({"step": step, "epoch": epoch, "loss": loss_value,
                                          "lr": scheduler.get_last_lr()[0]}) + "\n")
                metrics.flush()
                progress.update(task, completed=step, loss=f"{loss_value:.4f}")
                if step % config.checkpoint_every == 0 or step == total:
                    _save_checkpoint(ckpt_dir, step, model, optimizer, losses)
    finally:
        metrics.close()
    model.eval()
    if config.lora_r > 0:
        model = model.merge_and_unload()
    return {"model": model, "steps": total, "samples": len(captions), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "trainable_parameters": trainable,
            "frozen_parameters": frozen, "config": asdict(config), "prompt": prompt,
            "end_token_id": end_token_id, "end_token": processor.tokenizer.decode([end_token_id])}


def save_captioner(model: Blip2ForConditionalGeneration, processor: Blip2Processor, out: str | Path,
                   record: dict[str, Any] | None = None) -> Path:
    """Save C_S with ``save_pretrained`` (safetensors) and its processor, atomically (``out`` appears whole).

    ``Blip2ForConditionalGeneration.from_pretrained(out)`` and ``Blip2Processor.from_pretrained(out)`` load it.
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        processor.save_pretrained(str(tmp))
        if record is not None:
            clean = {k: v for k, v in record.items() if k != "model"}
            (tmp / FINETUNE_RECORD).write_text(json.dumps(clean, indent=2), encoding="utf-8")
    except BaseException:  # a full disk: no partial copy left (the C_S checkpoints are kept; a rerun saves again)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def push_captioner_to_hub(folder: str | Path, repo_id: str, *, private: bool = True, token: str | None = None,
                          local_paths: Sequence[str | Path | None] = ()) -> str:
    """Upload a saved captioner folder to a Hub model repository; return the repository URL.

    What is uploaded is a copy (`scf.hub.upload_redacted`, the hidden ``.FOLDER.hub-upload``, kept after a
    failure) in which ``local_paths`` and the home folder read ``<local>/<name>`` and ``~`` in ``scf_finetune.json``
    (it records the ``--captioner`` it was fine-tuned from) and the model configs; the tokenizer files are
    uploaded as they are. The token comes from ``token``, ``HF_TOKEN`` or the
    cached login, and is never logged.
    """
    from huggingface_hub import HfApi

    from scf.hub import upload_redacted

    return upload_redacted(HfApi(token=token), folder, repo_id=repo_id, repo_type="model", private=private,
                           commit_message="SCF spoof-aware captioner C_S", paths=[folder, *local_paths])
