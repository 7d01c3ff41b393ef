"""Benchmark I-FAS training, scoring and SCF captioning against a reference stack (the anchor), random weights.

Builds the real-size architectures from config (no download): the I-FAS model (CLIP ViT-L/14 + GAC + OPT-2.7B),
the BLIP-2 captioner (EVA ViT-g + Q-Former + OPT-2.7B) and the anchor stack of docs/benchmarks.md (CLIPVisionModel
ViT-L/14 + Blip2QFormerModel with 32 queries + linear + OPTForCausalLM, vision and LLM frozen, AdamW on the
connector), with SDPA attention, and measures in one run:

* ``matmul``: the bf16 8192^3 matrix product rate (the ceiling every efficiency is a fraction of) and the
  device-to-device copy bandwidth;
* ``score``: images/s of `IFASForConditionalGeneration.score` (one forward pass, batch 256, 12 prompt tokens);
* ``train``: I-FAS training samples/s at batch 32 with 40 text tokens (28 labelled), LLM frozen, LoRA, full,
  exactly as ``ifas-train`` runs them on CUDA (bf16 autocast, trainable weights fp32, frozen weights bf16,
  its fused AdamW), plus the frozen-LLM step on the reference path (logits at every position) to show what
  the fast path saves;
* ``qlora``: QLoRA training at batch 8 and its peak memory (needs bitsandbytes; skipped, with the reason, if
  it is missing);
* ``caption``: SCF captioning images/s with the real BLIP-2 architecture, 30 new tokens, greedy, on the
  library's default (fast) path and on plain ``generate``, and whether their greedy tokens agree;
* ``anchor``: the anchor's training step, scoring pass and ``generate`` captioning, same sizes;
* ``feed``: images/s that the CLIs' own default host data paths (``ifas-eval``'s scoring input, ``scf caption``'s
  decoding and preprocessing, ``ifas-train``'s DataLoader) deliver into device copies on this run's host, the
  model a no-op, each beside the kernel figure it feeds: the GPU figures start from tensors already on the
  device, so a path's ceiling is min(kernel, feed);
* ``pipeline``: the CPU image pipeline of ``ifas-eval`` (PNG decoding + CLIP preprocessing in threads), images/s,
  to compare with the scoring rate (the GPU figures start from tensors already on the device).

They run in the order matmul, score, train, qlora (issue 8's targets first), feed, anchor, caption (its compile
time is the one that cannot be foreseen), pipeline; with ``--budget-s`` a section that would not fit in the time left
is skipped with the reason, and a run that is cut off anyway renders what it measured and which requested
figures it lacks, and why. ``--resume-from JSON`` completes an earlier run: it measures only the requested
sections that run lacks and writes the two merged (tools/gpu_check.sh ``--resume``).

Each figure comes with its FLOPs per sample (``tools/flops.py``), the achieved TFLOP/s, the fraction of the
measured matmul rate, the peak memory (``torch.cuda.max_memory_allocated``) and its ratio to the anchor.
``--mode tiny`` runs the same code on tiny configs on CPU in seconds (a smoke run: its figures say nothing
about performance). Usage (see docs/benchmarks.md)::

    python tools/benchmark.py --mode full --out bench.json --docs docs/benchmarks.md
    python tools/benchmark.py --mode tiny --device cpu --what train,score,caption,anchor,matmul
    python tools/benchmark.py --mode full --budget-s 280 --out bench.json   # as tools/gpu_check.sh runs it
    python tools/benchmark.py --mode full --resume-from bench.json --out bench.json   # the figures it lacks

Only torch and transformers are needed (plus the workspace packages' ``src`` folders on PYTHONPATH);
``peft`` is imported for LoRA and ``bitsandbytes`` for QLoRA only, each measurement skipped with its reason
when its library is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flops as F  # noqa: E402  (tools/ is not a package)

logger = logging.getLogger("benchmark")

WHAT = ("matmul", "score", "train", "qlora", "feed", "caption", "anchor", "pipeline")
TRAIN_MODES = ("frozen", "lora", "full")
GIB = 1024**3
RESULTS_BEGIN = "<!-- benchmark-results:begin -->"
RESULTS_END = "<!-- benchmark-results:end -->"

TARGETS = {
    "score_fraction": 0.75,
    "train_frozen_fraction": 0.55,
    "train_full_fraction": 0.55,
    "caption_ratio_to_anchor": 10.0,
    "qlora_peak_gib": 16.0,
}
"""Issue 8's targets: fractions of the measured matmul rate, the captioning speed-up over the anchor's
``generate``, and the QLoRA memory ceiling at batch 8."""

NEED_S = {
    "full": {"matmul": 15, "pipeline": 30, "anchor.build": 30, "anchor.train": 20, "anchor.score": 15,
             "anchor.caption": 30, "ifas.build": 30, "ifas.score": 15, "ifas.train_frozen": 30,
             "ifas.train_full": 40, "ifas.train_lora": 30, "ifas.train_qlora": 90, "feed": 45, "blip2.caption": 25,
             "blip2.caption_reference": 20, "blip2.caption_fast": 90},
    "tiny": {},
}
"""Seconds a section is expected to need (an H200 estimate from review14, generous), by mode. With a budget
(``--budget-s``), a section starts only when at least this much time is left; otherwise it is skipped and the
reason recorded, rather than killed mid-way by the caller's time limit. ``blip2.caption`` is building the BLIP-2
model; ``blip2.caption_reference`` (plain ``generate``) and ``blip2.caption_fast`` (the fast path, whose first
calls compile the decoding step on CUDA) are its two figures, planned together before the build (`caption_plan`).
Tiny runs need nothing (0 s): only an exhausted budget skips their sections."""

SECTION_FIGURES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "matmul": (("matmul", None),), "pipeline": (("pipeline", None),),
    "anchor.train": (("anchor", "train"),), "anchor.score": (("anchor", "score"),),
    "anchor.caption": (("anchor", "caption"),), "ifas.score": (("ifas", "score"),),
    "ifas.train_frozen": (("ifas", "train_frozen"), ("ifas", "train_frozen_reference")),
    "ifas.train_full": (("ifas", "train_full"),), "ifas.train_lora": (("ifas", "train_lora"),),
    "ifas.train_qlora": (("ifas", "train_qlora"),),
    "feed": (("feed", "eval"), ("feed", "caption"), ("feed", "train")),
    "blip2.caption": (("blip2", "caption_reference"), ("blip2", "caption_fast")),
}
"""The figures (group, key; key None = the whole group) each measuring section writes."""

PARENT_SECTION = {"anchor.train": "anchor.build", "anchor.score": "anchor.build", "anchor.caption": "anchor.build",
                  "ifas.score": "ifas.build", "ifas.train_frozen": "ifas.build", "ifas.train_full": "ifas.build",
                  "ifas.train_lora": "ifas.build"}
"""Sections that run inside another (the one building their model)."""

_PROCESS_START = time.monotonic()


class BudgetSkip(Exception):
    """A section (or part of one, ``key``) not started because the run's time budget is too short for it."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key


@dataclass(frozen=True)
class Sizes:
    """Batch sizes, sequence lengths and repetitions of one run."""

    train_batch: int = 32
    qlora_batch: int = 8
    score_batch: int = 256
    caption_batch: int = 256
    anchor_caption_batch: int = 64
    caption_check_rows: int = 16
    text_tokens: int = 40
    answer_tokens: int = 28
    prompt_tokens: int = 12
    caption_prompt_tokens: int = 4
    new_tokens: int = 30
    warmup: int = 2
    iters: int = 5
    matmul_n: int = 8192


TINY_SIZES = Sizes(train_batch=4, qlora_batch=2, score_batch=8, caption_batch=8, anchor_caption_batch=4,
                   caption_check_rows=2,
                   text_tokens=12, answer_tokens=6, prompt_tokens=6, caption_prompt_tokens=3, new_tokens=5,
                   warmup=1, iters=2, matmul_n=256)


# --- configs ---------------------------------------------------------------------------------------------

def vit_l14_config(tiny: bool) -> Any:
    """CLIP ViT-L/14 at 224 px (``openai/clip-vit-large-patch14``'s config), or a tiny CLIP vision config."""
    from transformers import CLIPVisionConfig

    if tiny:
        return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                                image_size=224, patch_size=16)
    return CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                            image_size=224, patch_size=14, projection_dim=768)


def opt_config(tiny: bool) -> Any:
    """OPT-2.7B (``facebook/opt-2.7b``'s config), or a tiny OPT config."""
    from transformers import OPTConfig

    if tiny:
        return OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=512,
                         max_position_embeddings=256, word_embed_proj_dim=32, dropout=0.0,
                         pad_token_id=1, bos_token_id=2, eos_token_id=2)
    return OPTConfig(hidden_size=2560, ffn_dim=10240, num_hidden_layers=32, num_attention_heads=32, vocab_size=50272,
                     max_position_embeddings=2048, word_embed_proj_dim=2560, dropout=0.0,
                     pad_token_id=1, bos_token_id=2, eos_token_id=2)


def ifas_config(tiny: bool) -> Any:
    """I-FAS: ViT-L/14 + GAC (M = 32, one block at width 1024) + OPT-2.7B, or the tiny preset's config."""
    from ifas_model.configuration import GACConfig, IFASConfig

    vision, text = vit_l14_config(tiny), opt_config(tiny)
    connector = (GACConfig(num_queries=4, hidden_size=48, num_attention_heads=4, mlp_ratio=2.0) if tiny
                 else GACConfig(num_queries=32, hidden_size=1024, num_attention_heads=16))
    # Judgment ids are arbitrary here (random weights): any two ids of the vocabulary.
    return IFASConfig(vision_config=vision, connector_config=connector, text_config=text,
                      yes_token_id=10, no_token_id=11)


def blip2_config(tiny: bool) -> Any:
    """`Blip2Config` of ``Salesforce/blip2-opt-2.7b`` (EVA ViT-g 39 x 1408, Q-Former, OPT-2.7B), or the tiny one."""
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig

    if tiny:
        from scf.presets import tiny_blip2_config

        return tiny_blip2_config()
    vision = Blip2VisionConfig(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                               image_size=224, patch_size=14)
    qformer = Blip2QFormerConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                 num_attention_heads=12, cross_attention_frequency=2, encoder_hidden_size=1408)
    return Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(),
                       text_config=opt_config(False).to_dict(), num_query_tokens=32, image_token_index=50265)


def anchor_configs(tiny: bool) -> tuple[Any, Any, Any, int]:
    """(vision, Q-Former, text, queries) of the anchor stack."""
    from transformers import Blip2QFormerConfig

    vision, text = vit_l14_config(tiny), opt_config(tiny)
    if tiny:
        qformer = Blip2QFormerConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     cross_attention_frequency=2, encoder_hidden_size=vision.hidden_size)
        return vision, qformer, text, 4
    qformer = Blip2QFormerConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                                 cross_attention_frequency=2, encoder_hidden_size=vision.hidden_size)
    return vision, qformer, text, 32


# --- the anchor stack ------------------------------------------------------------------------------------

def build_anchor(tiny: bool) -> Any:
    """The anchor: CLIPVisionModel + Blip2QFormerModel (32 queries) + linear + OPTForCausalLM."""
    import torch
    from torch import nn
    from transformers import Blip2QFormerModel, CLIPVisionModel, OPTForCausalLM

    vision_cfg, qformer_cfg, text_cfg, queries = anchor_configs(tiny)

    class AnchorStack(nn.Module):
        """Assembled the usual way: full logits and the LM's own loss, ``generate`` for captions."""

        def __init__(self) -> None:
            super().__init__()
            self.vision = CLIPVisionModel(vision_cfg)
            self.query_tokens = nn.Parameter(torch.randn(1, queries, qformer_cfg.hidden_size) * 0.02)
            self.qformer = Blip2QFormerModel(qformer_cfg)
            self.projection = nn.Linear(qformer_cfg.hidden_size, text_cfg.word_embed_proj_dim)
            self.lm = OPTForCausalLM(text_cfg)
            self.vision.requires_grad_(False)
            self.lm.requires_grad_(False)

        def embed(self, pixel_values: Any, input_ids: Any) -> Any:
            with torch.no_grad():
                image = self.vision(pixel_values=pixel_values).last_hidden_state
            q = self.qformer(query_embeds=self.query_tokens.expand(image.shape[0], -1, -1),
                             encoder_hidden_states=image).last_hidden_state
            text = self.lm.get_input_embeddings()(input_ids)
            return torch.cat([self.projection(q).to(text.dtype), text], dim=1)

        def loss(self, pixel_values: Any, input_ids: Any) -> Any:
            embeds = self.embed(pixel_values, input_ids)
            labels = torch.cat([torch.full((input_ids.shape[0], queries), -100, device=input_ids.device), input_ids], 1)
            return self.lm(inputs_embeds=embeds, labels=labels).loss

        def p_yes(self, pixel_values: Any, input_ids: Any, yes: int) -> Any:
            logits = self.lm(inputs_embeds=self.embed(pixel_values, input_ids)).logits  # (B, K + T, V)
            return logits[:, -1].float().softmax(-1)[:, yes]

        def caption(self, pixel_values: Any, input_ids: Any, new_tokens: int) -> Any:
            embeds = self.embed(pixel_values, input_ids)
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
            return self.lm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=new_tokens,
                                    min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                                    pad_token_id=text_cfg.pad_token_id, eos_token_id=text_cfg.eos_token_id)

    model = AnchorStack()
    model.num_queries = queries
    model.configs = (vision_cfg, qformer_cfg, text_cfg)
    return model


# --- measurement helpers ---------------------------------------------------------------------------------

class Runner:
    """Holds the device, dtype, matmul ceiling and the results; writes the JSON after every section."""

    def __init__(self, mode: str, device: str, out: Path | None, sizes: Sizes, dtype: str = "auto",
                 budget_s: float | None = None, started: float | None = None) -> None:
        import torch

        self.mode, self.tiny, self.sizes, self.out = mode, mode == "tiny", sizes, out
        self.started = time.monotonic() if started is None else started
        self.budget_s = budget_s
        self.deadline = None if budget_s is None else self.started + budget_s
        self.needs = NEED_S.get(mode, {})
        self._running: list[str] = []
        self.previous: dict[str, Any] | None = None  # the earlier run being completed (--resume-from)
        self.attempted: list[str] = []  # the sections this run measures when resuming
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        if dtype == "auto":
            dtype = "bf16" if self.cuda else "fp32"
        self.dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
        self.results: dict[str, Any] = {"meta": environment(mode, self.device, self.dtype, sizes),
                                        "matmul": None, "pipeline": None, "ifas": {}, "blip2": {}, "anchor": {}, "feed": {},
                                        "skipped": {},
                                        "errors": {}}
        meta = self.results["meta"]
        meta.update(budget_s=budget_s, finished=False, running=None, section_start_s={}, memory_at_start_gib={})

    # -- timing --
    def sync(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_memory(self) -> None:
        import torch

        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def allocated_gib(self) -> float | None:
        """Memory held by tensors now (``torch.cuda.memory_allocated``); None on CPU."""
        import torch

        return round(torch.cuda.memory_allocated(self.device) / GIB, 3) if self.cuda else None

    def seconds_left(self) -> float | None:
        """Seconds left of the budget (None without one)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def require_time(self, key: str | None = None) -> None:
        """Raise `BudgetSkip` when less time is left than ``key`` (default: the running section) needs.

        Every section calls it first, so a section the budget cannot fit is skipped with its reason instead of
        being killed half-way by the caller's time limit.
        """
        key = key or self._running[-1]
        left = self.seconds_left()
        if left is None:
            return
        need = float(self.needs.get(key, 0.0))
        if left <= 0 or left < need:
            raise BudgetSkip(key, f"not started: {max(left, 0.0):.0f} s left of the {self.budget_s:g} s budget, "
                                  f"it needs about {need:.0f} s")

    def peak_gib(self) -> float | None:
        import torch

        return torch.cuda.max_memory_allocated(self.device) / GIB if self.cuda else None

    def time_it(self, fn: Callable[[], Any], warmup: int | None = None, iters: int | None = None,
                warmup_min_s: float = 0.0) -> dict[str, float]:
        """Median seconds per call after warm-up (synchronised around each call); also the warm-up time.

        The warm-up is ``warmup`` calls, continued until ``warmup_min_s`` seconds have passed (clocks and
        caches settled; the matmul ceiling uses 0.5 s on CUDA).
        """
        warmup = self.sizes.warmup if warmup is None else warmup
        iters = self.sizes.iters if iters is None else iters
        t0 = time.perf_counter()
        done = 0
        while done < warmup or time.perf_counter() - t0 < warmup_min_s:
            fn()
            done += 1
            if warmup_min_s:
                self.sync()
        self.sync()
        warm_s = time.perf_counter() - t0
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - t)
        return {"seconds": statistics.median(times), "warmup_s": warm_s, "warmup_calls": done, "iters": iters}

    def figure(self, per_second: float, unit: str, flops_per_item: dict[str, float] | None, batch: int,
               **extra: Any) -> dict[str, Any]:
        """One measured figure with its FLOP accounting and fraction of the matmul rate."""
        out: dict[str, Any] = {"value": per_second, "unit": unit, "batch": batch}
        if flops_per_item is not None:
            total = flops_per_item["total"]
            out["flops_per_item"] = total
            out["flops_parts"] = flops_per_item
            out["tflops"] = per_second * total / 1e12
            rate = (self.results.get("matmul") or {}).get("tflops")
            out["fraction_of_matmul"] = out["tflops"] / rate if rate else None
        out["peak_memory_gib"] = self.peak_gib()
        out.update(extra)
        return out

    def merged(self) -> dict[str, Any]:
        """This run's results, merged into the earlier run's when resuming (`merge_results`)."""
        if self.previous is None:
            return self.results
        return merge_results(self.previous, self.results, self.attempted)

    def save(self) -> None:
        """Rewrite ``out`` (atomically) with the results so far, merged with the earlier run's when resuming."""
        self.write(self.merged())

    def write(self, results: dict[str, Any]) -> None:
        if self.out is not None:
            from scf.shards import write_text_atomic

            self.out.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out, json.dumps(results, indent=2, default=str))

    @contextlib.contextmanager
    def section(self, name: str) -> Any:
        """Run one section; an exception is recorded under ``errors`` and the next section still runs.

        The body starts with `require_time`: a `BudgetSkip` is recorded under ``skipped``. The JSON is saved at
        the start (``meta.running`` names the section, so a run killed inside it says where it ended, and
        ``meta.memory_at_start_gib`` shows memory a previous section left behind) and at the end.
        """
        logger.info("section %s", name)
        meta = self.results["meta"]
        t = time.perf_counter()
        meta["section_start_s"][name] = round(time.monotonic() - self.started, 1)
        meta["memory_at_start_gib"][name] = self.allocated_gib()
        self._running.append(name)
        meta["running"] = name
        self.save()
        try:
            yield
        except BudgetSkip as e:
            logger.warning("skipped %s: %s", e.key, e)
            self.results["skipped"][e.key] = str(e)
        except Exception as e:  # noqa: BLE001 - one broken measurement must not lose the others
            message = f"{type(e).__name__}: {e}"
            logger.error("section %s failed: %s", name, message)
            self.results["errors"][name] = f"{message}\n{traceback.format_exc(limit=6)}"
            # drop the failed frames' locals (activations, the optimizer a step held) before the next section
            traceback.clear_frames(e.__traceback__)
        finally:
            self._running.pop()
            meta["running"] = self._running[-1] if self._running else None
            meta.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t, 2)
            self.reset_memory()
            self.save()

    # -- inputs --
    def pixels(self, b: int, size: int, dtype: Any = None) -> Any:
        import torch

        return torch.randn(b, 3, size, size, device=self.device, dtype=dtype or self.dtype)

    def ids(self, b: int, t: int, vocab: int, bos: int) -> Any:
        import torch

        ids = torch.randint(4, min(vocab, 50000), (b, t), device=self.device)
        ids[:, 0] = bos
        return ids

    def build(self, factory: Callable[[], Any]) -> Any:
        """Build a model directly on the device in the run's dtype (random init, no download)."""
        import torch

        previous = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)
        try:
            with torch.device(self.device):
                model = factory()
        finally:
            torch.set_default_dtype(previous)
        return model.to(self.device, self.dtype)


def environment(mode: str, device: Any, dtype: Any, sizes: Sizes) -> dict[str, Any]:
    """Versions, card, date, command: what docs/benchmarks.md prints above the figures."""
    import torch
    import transformers

    meta: dict[str, Any] = {
        "mode": mode, "device": str(device), "dtype": str(dtype).removeprefix("torch."),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "sizes": sizes.__dict__, "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta.update(card=props.name, card_memory_gib=round(props.total_memory / GIB, 1),
                    cuda=torch.version.cuda)
    else:
        meta["card"] = f"CPU ({platform.processor() or platform.machine()})"
    for lib in ("peft", "bitsandbytes"):
        meta[lib] = library_version(lib)
    if os.environ.get(CARRIED_BNB_ENV):
        meta["carried_bitsandbytes_error"] = os.environ[CARRIED_BNB_ENV]
    meta["git_commit"] = git_commit()
    return meta


COMMIT_FILE = ".bench_commit"
"""A file at the repository root holding the commit, for a copy of the tree without ``.git`` (the GPU machine):
``git rev-parse --short HEAD > .bench_commit`` before the run (it is untracked and not ignored, so it travels)."""


def git_commit(root: Path | None = None) -> str:
    """The commit the tool runs from: ``git rev-parse`` when there is a ``.git``, else the first line of
    `COMMIT_FILE`, else a string that says it is unknown (never a guess)."""
    root = root or Path(__file__).resolve().parent.parent
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root,
                                check=True, timeout=20).stdout.strip()
        if commit:
            return commit
    with contextlib.suppress(OSError, IndexError):
        commit = (root / COMMIT_FILE).read_text().split()[0]
        if commit:
            return f"{commit} (from {COMMIT_FILE})"
    return f"unknown (no git repository and no {COMMIT_FILE})"


def library_version(lib: str) -> str | None:
    """Installed version of ``lib`` from its metadata; for a copy without ``*.dist-info`` (the trimmed
    bitsandbytes carried to the GPU machine), its ``__version__`` if it imports; None when it is absent.

    The metadata is read first, so peft and bitsandbytes are not imported just for their versions.
    """
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(lib)
    except PackageNotFoundError:
        pass
    try:
        if importlib.util.find_spec(lib) is None:
            return None
        found = getattr(__import__(lib), "__version__", None)
    except Exception as e:  # noqa: BLE001 - present but broken: say so rather than "not installed"
        return f"present, does not import ({type(e).__name__})"
    return f"{found} (no package metadata)" if found else "present, no version"


# --- sections --------------------------------------------------------------------------------------------

def measure_pipeline(r: Runner) -> None:
    """The CPU side of ``ifas-eval`` on this machine: PNG decoding and CLIP preprocessing of 224 x 224 face crops,
    in batches of the scoring batch, with `scf.prefetch.prefetched` on all of ``min(8, CPUs)`` threads and on one.
    The GPU figures are measured on tensors already on the device; this says whether the CPU keeps up."""
    import io
    from functools import partial

    import numpy as np
    from PIL import Image
    from transformers import CLIPImageProcessor

    from scf.prefetch import prefetched

    rng = np.random.default_rng(0)
    pngs = []
    for _ in range(16):  # distinct random images; PNG of noise is the slow (incompressible) case
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    batch = r.sizes.score_batch
    n = batch * (2 if r.tiny else 4)
    data = [pngs[i % len(pngs)] for i in range(n)]
    processor = CLIPImageProcessor()  # openai/clip-vit-large-patch14's preprocessing: 224 resize + crop

    def prepare(chunk: list[bytes]) -> Any:
        images = []
        for raw in chunk:
            with Image.open(io.BytesIO(raw)) as im:
                images.append(im.convert("RGB"))
        return processor(images, return_tensors="pt")["pixel_values"]

    jobs = [data[i:i + batch] for i in range(0, n, batch)]

    def rate(threads: int) -> float:
        t = time.perf_counter()
        for _ in prefetched(jobs, lambda job: [partial(prepare, job[a:a + 32]) for a in range(0, len(job), 32)],
                            threads):
            pass
        return n / (time.perf_counter() - t)

    threads = min(8, os.cpu_count() or 1)
    r.results["pipeline"] = {"images": n, "batch": batch, "threads": threads, "cpu_count": os.cpu_count(),
                             "images_per_s": rate(threads), "images_per_s_one_thread": rate(0)}


FEED_PATHS = ("eval", "caption", "train")
"""The host-feed figures (`measure_feed`), in the order they are measured."""

FEED_KERNELS = {"eval": ("ifas", "score"), "caption": ("blip2", "caption_fast"), "train": ("ifas", "train_frozen")}
"""The kernel figure each host path feeds (the fastest training mode, where the host is likeliest to limit)."""

FEED_LABELS = {"eval": "ifas-eval scoring input (`_prepared_batches`)",
               "caption": "scf caption input (`_decoded_batches` + `prepare`)",
               "train": "ifas-train DataLoader (`VQADataset` + `VQACollator`)"}


def _feed_pngs(count: int, size: int = 224) -> list[bytes]:
    """``count`` distinct ``size`` x ``size`` RGB PNGs of a noisy synthetic face (a shaded ellipse on a gradient,
    plus per-pixel noise): about the 70-90 KB of the PNG crops `scf ingest` writes, so decoding costs what it
    costs on real crops (PNG of pure noise, about 150 KB, would overstate it; flat images would understate it)."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(count):
        base = 60 + 120 * x[..., None] * rng.uniform(0.5, 1.0, 3) + 40 * y[..., None]
        face = ((x - 0.5) / 0.3) ** 2 + ((y - 0.5) / 0.4) ** 2 < 1
        base[face] = base[face] * 0.4 + rng.uniform(120, 200, 3) * 0.6
        noisy = base + rng.normal(0, 4, (size, size, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _feed_table(n: int, pngs: list[bytes]) -> Any:
    """``n`` rows in the VQA schema (a superset of the benchmark schema), cycling through ``pngs``."""
    import datasets

    from scf.schema import interpretation_for, judgment_for, vqa_features

    cols: dict[str, list[Any]] = {name: [] for name in vqa_features()}
    for i in range(n):
        label = i % 2
        caption = "a person holding a printed photo of a face" if label == 0 else "a young man with short hair"
        row = {"image": {"bytes": pngs[i % len(pngs)], "path": None}, "label": label,
               "attack_type": "print" if label == 0 else "live", "attack_detail": "", "source": "feed",
               "subject_id": f"s{i % 7}", "video_id": f"feed/v{i // 2}", "frame_index": i % 2, "split": "test",
               "path": f"feed/{i}.png", "question": "", "judgment": judgment_for(label),
               "interpretation": interpretation_for(caption), "answer": "", "caption": caption,
               "caption_general": caption, "captioner": "", "captioner_general": "", "keyword": ""}
        for name, value in row.items():
            cols[name].append(value)
    return datasets.Dataset.from_dict(cols, features=vqa_features())


def _drain(r: Runner, batches: Any, consume: Callable[[Any], int]) -> dict[str, Any]:
    """Take every batch of ``batches``, ``consume`` it (copy it to the device: the model is a no-op) and wait for
    the copy. ``value`` is all images over all the time, the start of the threads or workers included (the
    conservative figure); ``steady_value`` counts only the images after the first batch over the time after it,
    an upper bound (the batches prepared ahead while the first one was made come in early)."""
    t0 = time.perf_counter()
    first_at, first_n, count = None, 0, 0
    for batch in batches:
        count += consume(batch)
        r.sync()
        if first_at is None:
            first_at, first_n = time.perf_counter(), count
    end = time.perf_counter()
    if first_at is None or end <= first_at or count == first_n:
        raise RuntimeError(f"the path delivered {count} images in one batch or none: too few to time")
    return {"value": count / (end - t0), "unit": "images/s", "images": count, "seconds": end - t0,
            "first_batch_s": first_at - t0, "steady_value": (count - first_n) / (end - first_at)}


def _feed_eval(r: Runner, table: Any, batch: int, threads: int) -> dict[str, Any]:
    """`ifas_eval.scoring._prepared_batches` as `score_test_set` runs it: real-size CLIP ViT-L/14 preprocessing
    (`build_image_processor(224)`) in ``threads`` threads, batches pinned on CUDA, each copied to the device."""
    from ifas_eval.scoring import RowSet, _prepared_batches, _raw_images
    from ifas_model.processing import IFASProcessor, build_image_processor
    from scf.presets import build_tiny_tokenizer
    from scf.schema import BENCHMARK_COLUMNS

    ds = table.select_columns(list(BENCHMARK_COLUMNS))
    n = len(ds)
    rows = RowSet(ds, [("feed", "test", i) for i in range(n)])
    processor = IFASProcessor(build_image_processor(224), build_tiny_tokenizer())
    bounds = [(lo, min(n, lo + batch)) for lo in range(0, n, batch)]

    def consume(inputs: dict[str, Any]) -> int:
        moved = {k: v.to(r.device, non_blocking=True) for k, v in inputs.items()}
        return len(moved["pixel_values"])

    fig = _drain(r, _prepared_batches(rows, _raw_images(ds), processor, bounds, threads, pin=r.cuda), consume)
    return {**fig, "batch": batch, "threads": threads, "pinned": r.cuda,
            "path": "ifas_eval.scoring._prepared_batches", "processor": "CLIP ViT-L/14 224 px (build_image_processor)"}


def blip2_image_processor() -> Any:
    """``Salesforce/blip2-opt-2.7b``'s image processor from its config values (no download): 224 x 224 bicubic
    resize, CLIP mean/std, the PIL backend `load_blip2` asks for."""
    from transformers import BlipImageProcessorPil

    return BlipImageProcessorPil(size={"height": 224, "width": 224}, resample=3, do_rescale=True,
                                 rescale_factor=1 / 255, do_normalize=True,
                                 image_mean=[0.48145466, 0.4578275, 0.40821073],
                                 image_std=[0.26862954, 0.26130258, 0.27577711], do_convert_rgb=True)


def _feed_caption(r: Runner, table: Any, batch: int, threads: int) -> dict[str, Any]:
    """`scf.captioning.pipeline._decoded_batches` with `Blip2Captioner.prepare` as `scf caption` runs them:
    decoding and preprocessing in ``threads`` threads (with none, ``prepare`` runs on the main thread, as
    `Blip2Captioner.caption` does), the pixels pinned on CUDA and copied to the device in the run's dtype as
    `Blip2Captioner.caption_prepared` copies them. The captioner is the tiny one (its model never runs); with
    the full mode its image processor is the real-size one (`blip2_image_processor`)."""
    import torch

    from scf.captioning.captioner import Blip2Captioner
    from scf.captioning.pipeline import _decoded_batches, _Item
    from scf.presets import build_tiny_captioner

    model, processor = build_tiny_captioner()
    if not r.tiny:
        processor.image_processor = blip2_image_processor()
    captioner = Blip2Captioner(model.to(r.device), processor, "feed", batch_size=batch)
    images_ds = table.select_columns(["image"])
    items = [_Item("test", i, f"feed/{i}", 0, "print") for i in range(len(images_ds))]
    jobs = [(images_ds, items[a:a + batch]) for a in range(0, len(items), batch)]
    prepare = captioner.prepare if threads > 0 else None

    def consume(decoded: tuple[list[Any], Any, Any]) -> int:
        images, failure, prepared = decoded
        if failure is not None:
            raise RuntimeError(f"row {failure[0].index} does not decode: {failure[1]}")
        parts = prepared if prepared is not None else [captioner.prepare(images)]
        pixels = torch.cat([p.to(r.device, r.dtype, non_blocking=True) for p in parts])
        return len(pixels)

    fig = _drain(r, _decoded_batches(jobs, threads, prepare), consume)
    return {**fig, "batch": batch, "threads": threads, "pinned": r.cuda,
            "prepare_in": "prefetch threads" if prepare else "main thread",
            "path": "scf.captioning.pipeline._decoded_batches + Blip2Captioner.prepare",
            "processor": "tiny captioner's (224 px)" if r.tiny else "BLIP-2 224 px (blip2_image_processor)"}


def _feed_train(r: Runner, table: Any, batch: int, workers: int) -> dict[str, Any]:
    """ifas-train's DataLoader (`Trainer._loader`: ``num_workers`` processes, persistent, pinned on CUDA) over
    `VQADataset` and `VQACollator` with the real-size CLIP preprocessing, rows in `ResumableBatchSampler`'s
    shuffled order, each batch copied to the device."""
    from types import SimpleNamespace

    import datasets

    from ifas_model.processing import IFASProcessor, build_image_processor
    from ifas_model.training.data import ResumableBatchSampler, VQACollator, VQADataset
    from ifas_model.training.trainer import Trainer
    from scf.presets import build_tiny_tokenizer

    undecoded = table.cast_column("image", datasets.Image(decode=False))  # as load_corpus reads the corpus
    dataset = VQADataset(undecoded)
    sampler = ResumableBatchSampler(len(dataset), batch, seed=0)
    collate = VQACollator(IFASProcessor(build_image_processor(224), build_tiny_tokenizer()))
    owner = SimpleNamespace(config=SimpleNamespace(num_workers=workers), dist=SimpleNamespace(device=r.device))
    loader = Trainer._loader(owner, dataset, sampler, collate)

    def consume(b: Any) -> int:
        moved = {k: v.to(r.device, non_blocking=True) for k, v in b.inputs.items()}
        return len(moved["pixel_values"])

    batches = iter(loader)
    try:
        fig = _drain(r, batches, consume)
    finally:
        del batches
        del loader  # persistent workers end with the loader
    return {**fig, "batch": batch, "workers": workers, "pinned": r.cuda,
            "path": "ifas_model.training.trainer.Trainer._loader (VQADataset, VQACollator)",
            "processor": "CLIP ViT-L/14 224 px (build_image_processor)"}


def measure_feed(r: Runner) -> None:
    """Images/s the CLIs' default host data paths deliver into device copies, the model a no-op (`FEED_PATHS`).

    On this run's host, over synthetic 224 x 224 PNG rows (`_feed_pngs`) in a VQA-schema table: ``eval``
    (`_feed_eval`, batch ``score_batch``, `score_test_set`'s default threads: min(8, CPUs) on CUDA, none on
    CPU), ``caption`` (`_feed_caption`, batch ``caption_batch``, `scf caption`'s default threads, the same rule)
    and ``train`` (`_feed_train`, batch ``train_batch``, ifas-train's default ``--num-workers``). ``--mode tiny``:
    a few small batches on 2 threads. A path that fails is recorded under ``errors`` as ``feed.<path>`` and the
    others still run. Needs `datasets` (the paths read a datasets table, as the CLIs do): without it the section
    is skipped with the reason.
    """
    r.require_time()
    error = _import_error("datasets")
    if error:
        r.results["skipped"]["feed"] = (f"cannot import datasets: {error} (the CLIs' data paths read datasets "
                                        "tables; the GPU image lacks it unless carried)")
        return
    from dataclasses import fields

    from ifas_model.training.config import TrainConfig

    s, cpus = r.sizes, os.cpu_count() or 1
    workers = next(f.default for f in fields(TrainConfig) if f.name == "num_workers")  # ifas-train's default
    threads = 2 if r.tiny else (min(8, cpus) if r.cuda else 0)  # score_test_set's and scf caption's default
    batches = 3 if r.tiny else 16
    pngs = _feed_pngs(4 if r.tiny else 16)
    n = max(s.score_batch, s.caption_batch, s.train_batch) * batches
    table = _feed_table(n, pngs)
    host = {"cpu_count": cpus, "distinct_pngs": len(pngs), "png_kib_mean": round(sum(map(len, pngs)) / len(pngs) / 1024, 1)}
    runs = {"eval": lambda: _feed_eval(r, table.select(range(s.score_batch * batches)), s.score_batch, threads),
            "caption": lambda: _feed_caption(r, table.select(range(s.caption_batch * batches)), s.caption_batch,
                                             threads),
            "train": lambda: _feed_train(r, table.select(range(s.train_batch * (4 if r.tiny else 64))),
                                         s.train_batch, workers)}
    for path in FEED_PATHS:
        try:
            r.results["feed"][path] = {**runs[path](), **host}
        except Exception as e:  # noqa: BLE001 - one path's failure must not lose the others
            message = f"{type(e).__name__}: {e}"
            logger.error("feed %s failed: %s", path, message)
            r.results["errors"][f"feed.{path}"] = f"{message}\n{traceback.format_exc(limit=6)}"
        r.save()


def measure_matmul(r: Runner) -> None:
    """bf16 (fp32 on CPU) n^3 matmul rate on random data, and device-to-device copy bandwidth."""
    import torch

    n = r.sizes.matmul_n
    a = torch.randn(n, n, device=r.device, dtype=r.dtype)
    b = torch.randn(n, n, device=r.device, dtype=r.dtype)
    t = r.time_it(lambda: a @ b, warmup=3, iters=10, warmup_min_s=0.5 if r.cuda else 0.0)
    src = torch.randn(256 * 1024 * 1024 // 2 if r.cuda else 1 << 20, device=r.device, dtype=r.dtype)
    dst = torch.empty_like(src)
    c = r.time_it(lambda: dst.copy_(src), warmup=3, iters=10)
    r.results["matmul"] = {"n": n, "dtype": str(r.dtype).removeprefix("torch."), "seconds": t["seconds"],
                           "warmup_s": t["warmup_s"], "warmup_calls": t["warmup_calls"],
                           "tflops": 2 * n**3 / t["seconds"] / 1e12,
                           "copy_tb_per_s": 2 * src.numel() * src.element_size() / c["seconds"] / 1e12}


def _ifas_train_batch(r: Runner, config: Any, b: int) -> dict[str, Any]:
    import torch

    s, t = r.sizes, config.text_config
    ids = r.ids(b, s.text_tokens, t.vocab_size, t.bos_token_id)
    labels = torch.full_like(ids, -100)
    first = s.text_tokens - s.answer_tokens
    labels[:, first:] = ids[:, first:]
    segments = torch.zeros_like(ids)
    segments[:, first] = 1
    segments[:, first + 1:] = 2
    return {"pixel_values": r.pixels(b, config.vision_config.image_size), "input_ids": ids,
            "attention_mask": torch.ones_like(ids), "labels": labels, "answer_segments": segments}


def _train_step(r: Runner, model: Any, batch: dict[str, Any], optimizer: Any, **forward_kw: Any) -> None:
    """One optimizer step as ``ifas-train`` runs it: forward under autocast in the run's dtype (none in fp32)."""
    import torch

    with torch.autocast(r.device.type, dtype=r.dtype, enabled=r.dtype != torch.float32):
        loss = model(**batch, **forward_kw).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _prepare_training(r: Runner, model: Any) -> Any:
    """ifas-train's precision and optimizer: trainable weights fp32, frozen ones in the run's dtype
    (`set_training_dtypes`), and its AdamW (`build_adamw`: fused on CUDA); returns the optimizer."""
    import torch

    from ifas_model.adapters import set_training_dtypes
    from ifas_model.training.trainer import build_adamw

    set_training_dtypes(model, None if r.dtype == torch.float32 else r.dtype)
    return build_adamw(model, learning_rate=1e-5, weight_decay=0.05)


def _optimizer(r: Runner, params: list[Any]) -> Any:
    import torch

    return torch.optim.AdamW(params, lr=1e-5, weight_decay=0.05, fused=r.cuda or None)


def measure_ifas(r: Runner, sections: set[str]) -> None:
    """I-FAS scoring, then training with the LLM frozen / full / LoRA (one model, adapted in that order), as far as
    ``sections`` (``ifas.score``, ``ifas.train_<mode>``) ask."""
    import torch

    from ifas_model.adapters import apply_llm_training
    from ifas_model.modeling import IFASForConditionalGeneration

    config = ifas_config(r.tiny)
    model = r.build(lambda: IFASForConditionalGeneration(config))
    s = r.sizes
    r.results["meta"]["ifas_attn_implementation"] = getattr(model.language_model.config, "_attn_implementation", None)
    if "ifas.score" in sections:
        with r.section("ifas.score"):
            r.require_time()
            model.eval()
            t = config.text_config
            ids = r.ids(s.score_batch, s.prompt_tokens, t.vocab_size, t.bos_token_id)
            inputs = {"pixel_values": r.pixels(s.score_batch, config.vision_config.image_size), "input_ids": ids,
                      "attention_mask": torch.ones_like(ids)}
            r.reset_memory()
            with torch.inference_mode():
                timing = r.time_it(lambda: model.score(**inputs))
            r.results["ifas"]["score"] = r.figure(
                s.score_batch / timing["seconds"], "images/s", F.ifas_score_sample(config, s.prompt_tokens),
                s.score_batch, prompt_tokens=s.prompt_tokens, llm_tokens=config.image_token_count + s.prompt_tokens,
                **timing)
    order = [m for m in ("frozen", "full", "lora") if f"ifas.train_{m}" in sections]  # LoRA last: it changes the model
    for llm in order:
        with r.section(f"ifas.train_{llm}"):
            r.require_time()
            if llm == "lora":
                error = _import_error("peft")
                if error:
                    r.results["skipped"]["ifas.train_lora"] = f"cannot import peft: {error}"
                    continue
            optimizer = None
            try:
                apply_llm_training(model, llm)
                optimizer = _prepare_training(r, model)
                model.train()
                batch = _ifas_train_batch(r, config, s.train_batch)
                r.reset_memory()
                timing = r.time_it(lambda: _train_step(r, model, batch, optimizer))  # noqa: B023
                flops = F.ifas_train_sample(config, s.text_tokens, s.answer_tokens, llm, config.lora_r)
                r.results["ifas"][f"train_{llm}"] = r.figure(
                    s.train_batch / timing["seconds"], "samples/s", flops, s.train_batch,
                    llm_tokens=config.image_token_count + s.text_tokens, labelled_tokens=s.answer_tokens,
                    note=TRAIN_NOTE, **timing)
                if llm == "frozen":  # the reference path: logits at every position, loss over them
                    r.reset_memory()
                    timing = r.time_it(lambda: _train_step(r, model, batch, optimizer, return_logits=True))  # noqa: B023
                    ref = F.ifas_train_reference_sample(config, s.text_tokens, s.answer_tokens)
                    r.results["ifas"]["train_frozen_reference"] = r.figure(
                        s.train_batch / timing["seconds"], "samples/s", ref, s.train_batch,
                        note="return_logits=True: LM head at every text position (the reference path)", **timing)
            finally:  # free the AdamW state and gradients before the next mode, also after a failure
                optimizer = None
                model.zero_grad(set_to_none=True)


TRAIN_NOTE = ("ifas-train's default path on CUDA: bf16 autocast, trainable weights and AdamW state fp32, frozen "
              "weights bf16, fused AdamW, LM head at the labelled positions only")


def measure_qlora(r: Runner) -> None:
    """QLoRA training of I-FAS at batch 8: samples/s and peak memory (needs bitsandbytes and peft)."""
    r.require_time()
    problems = [f"cannot import {lib}: {error}" for lib in ("bitsandbytes", "peft") if (error := _import_error(lib))]
    if problems:
        carried = os.environ.get(CARRIED_BNB_ENV)
        if carried and _import_error("bitsandbytes"):
            problems.append(f"the carried copy was left off PYTHONPATH by gpu_check.sh: {carried}")
        r.results["skipped"]["ifas.train_qlora"] = "; ".join(problems) + " (QLoRA needs bitsandbytes and peft)"
        return
    from ifas_model.adapters import apply_llm_training
    from ifas_model.modeling import IFASForConditionalGeneration

    config = ifas_config(r.tiny)
    s = r.sizes
    model = r.build(lambda: IFASForConditionalGeneration(config))
    apply_llm_training(model, "qlora", compute_dtype=r.dtype)
    model.to(r.device)
    optimizer = _prepare_training(r, model)
    model.train()
    r.reset_memory()  # the figure is the training peak, not the bf16 model built before quantizing
    batch = _ifas_train_batch(r, config, s.qlora_batch)
    timing = r.time_it(lambda: _train_step(r, model, batch, optimizer))
    fig = r.figure(s.qlora_batch / timing["seconds"], "samples/s",
                   F.ifas_train_sample(config, s.text_tokens, s.answer_tokens, "qlora", config.lora_r),
                   s.qlora_batch, note="peak memory of the training steps (4-bit LLM, LoRA, AdamW)", **timing)
    r.results["ifas"]["train_qlora"] = fig


CARRIED_BNB_ENV = "BENCH_CARRIED_BNB_ERROR"
"""Set by gpu_check.sh when the carried ``.bnb`` copy of bitsandbytes failed to import: its error line."""


def _import_error(lib: str) -> str | None:
    """Why ``lib`` cannot be imported ("not installed", or the exception its import raised), None if it can."""
    import importlib.util

    try:
        if importlib.util.find_spec(lib) is None:
            return "not installed"
        __import__(lib)
    except Exception as e:  # noqa: BLE001 - e.g. bitsandbytes whose native library does not load
        return f"{type(e).__name__}: {e}".splitlines()[0]
    return None


def _cast_like_from_pretrained(model: Any, dtype: Any) -> Any:
    """Cast as ``from_pretrained(dtype=...)`` does: BLIP-2 keeps its Q-Former and query tokens in fp32."""
    import torch

    model.to(dtype)
    for name in getattr(model, "_keep_in_fp32_modules", None) or ():
        part = getattr(model, name, None)
        if isinstance(part, torch.nn.Module):
            part.float()
        elif isinstance(part, torch.nn.Parameter):
            part.data = part.data.float()
    return model


def caption_plan(r: Runner, parts: frozenset[str] = frozenset({"reference", "fast"})) -> tuple[bool, bool]:
    """Which captioning figures (plain ``generate`` reference, fast path) to measure in the time left.

    Both are checked up front against their combined estimate (`NEED_S`: the build, plus each figure), before
    the model is built: both when both fit; else the fast path alone (the target; its greedy tokens are then
    checked against plain ``generate`` on a small batch, ``Sizes.caption_check_rows``); else the reference alone;
    else nothing (`BudgetSkip`). A figure left out is recorded under ``skipped`` with the reason. ``parts`` are
    the figures still wanted (a resumed run asks only for those an earlier run lacks).

    Returns:
        (measure the reference figure, measure the fast path).
    """
    left = r.seconds_left()
    build, ref_s, fast_s = (float(r.needs.get(k, 0.0)) for k in
                            ("blip2.caption", "blip2.caption_reference", "blip2.caption_fast"))
    want_ref, want_fast = "reference" in parts, "fast" in parts
    if left is None:
        return want_ref, want_fast
    have = f"{max(left, 0.0):.0f} s left of the {r.budget_s:g} s budget"
    if left > 0 and want_ref and want_fast and left >= build + ref_s + fast_s:
        return True, True
    if left > 0 and want_fast and left >= build + fast_s:
        if want_ref:
            r.results["skipped"]["blip2.caption_reference"] = (
                f"not started: {have} fits the fast path (the target, about {build + fast_s:.0f} s) but not also "
                f"this figure (about {build + ref_s + fast_s:.0f} s for both); the fast path's greedy tokens were "
                f"checked against plain generate on {r.sizes.caption_check_rows} rows instead")
        return False, True
    if left > 0 and want_ref and left >= build + ref_s:
        if want_fast:
            r.results["skipped"]["blip2.caption_fast"] = (
                f"not started: {have}, it needs about {build + fast_s:.0f} s (the reference figure, about "
                f"{build + ref_s:.0f} s, was measured instead)")
        return True, False
    need = build + min([x for x, w in ((ref_s, want_ref), (fast_s, want_fast)) if w] or [0.0])
    raise BudgetSkip("blip2.caption", f"not started: {have}, it needs about {need:.0f} s")


def measure_caption(r: Runner, parts: frozenset[str] = frozenset({"reference", "fast"})) -> None:
    """SCF captioning with the BLIP-2 architecture: plain ``generate`` (the reference), then the library's default
    (fast) path, and whether their greedy tokens agree; `caption_plan` first decides which fit the time left.

    With both, the agreement is checked on the rows of the last timed fast batch that the reference batch also
    holds (the first ``anchor_caption_batch`` rows; same inputs), so the compiled decoding step is never called
    at a second batch size (a recompile and a new CUDA graph that would cost about as much as the first compile).
    With the fast path alone, plain ``generate`` runs once, untimed, on the first ``caption_check_rows`` rows of
    that batch. ``compile_s`` is the warm-up time less its calls' steady time: on CUDA, compiling the decoding
    step. The compiler's caches and CUDA graphs are released at the end (``torch._dynamo.reset``), so they do not
    stay in the memory of whatever runs next.
    """
    import torch
    from transformers import Blip2ForConditionalGeneration

    from scf.captioning.captioner import DecodingConfig, generate_caption_ids

    with_ref, with_fast = caption_plan(r, parts)
    if not (with_ref or with_fast):
        return
    config = blip2_config(r.tiny)
    model = r.build(lambda: Blip2ForConditionalGeneration(config))
    _cast_like_from_pretrained(model, r.dtype).eval()
    s = r.sizes
    decoding = DecodingConfig(max_new_tokens=s.new_tokens, min_new_tokens=s.new_tokens)
    q = config.num_query_tokens

    def inputs(b: int) -> dict[str, Any]:
        t = config.text_config
        prompt = r.ids(1, 1 + s.caption_prompt_tokens, t.vocab_size, t.bos_token_id).expand(b, -1)
        image = torch.full((b, q), config.image_token_index, device=r.device)
        ids = torch.cat([image, prompt], 1)
        return {"pixel_values": r.pixels(b, config.vision_config.image_size), "input_ids": ids,
                "attention_mask": torch.ones_like(ids)}

    flops = F.blip2_caption_sample(config.vision_config, config.qformer_config, config.text_config, q,
                                   1 + s.caption_prompt_tokens, s.new_tokens)
    try:
        with torch.inference_mode():
            fast_in = inputs(s.caption_batch)
            rows = min(s.anchor_caption_batch, s.caption_batch)
            ref_ids: list[Any] = []
            if with_ref:
                # Plain generate first, so that its figure stands even if the fast path fails on this machine.
                ref_in = {k: v[:rows] for k, v in fast_in.items()}
                r.reset_memory()
                timing = r.time_it(lambda: ref_ids.append(generate_caption_ids(model, **ref_in, decoding=decoding,
                                                                               fast=False)), warmup=1, iters=2)
                r.results["blip2"]["caption_reference"] = r.figure(
                    rows / timing["seconds"], "images/s", flops, rows,
                    new_tokens=s.new_tokens, note="plain generate (dynamic cache), the reference path", **timing)
                r.save()
            if not with_fast:
                return
            if with_ref:
                r.require_time("blip2.caption_fast")  # the reference may have overrun its estimate
            r.reset_memory()
            fast_ids: list[Any] = []

            def fast() -> None:
                fast_ids[:] = [generate_caption_ids(model, **fast_in, decoding=decoding)]

            timing = r.time_it(fast, warmup=2, iters=max(2, s.iters // 2))
            fig = r.figure(s.caption_batch / timing["seconds"], "images/s", flops, s.caption_batch,
                           new_tokens=s.new_tokens, note="warmup_s includes compiling the decoding step on CUDA",
                           compile_s=max(0.0, timing["warmup_s"] - timing["warmup_calls"] * timing["seconds"]),
                           **timing)
            if not with_ref:  # the greedy check on a small batch of plain generate, untimed
                rows = min(s.caption_check_rows, s.caption_batch)
                ref_ids.append(generate_caption_ids(model, **{k: v[:rows] for k, v in fast_in.items()},
                                                    decoding=decoding, fast=False))
            same = (fast_ids[0][:rows] == ref_ids[-1]).all(dim=1)
            fig["greedy_rows_identical_to_reference"] = same.float().mean().item()
            fig["greedy_rows_compared"] = rows
            r.results["blip2"]["caption_fast"] = fig
    finally:
        torch._dynamo.reset()  # compiled graphs and CUDA-graph pools; the section's end empties the cache


def measure_anchor(r: Runner, sections: set[str]) -> None:
    """The anchor: training step (batch 32), scoring (batch 256), ``generate`` captioning (batch 64), as far as
    ``sections`` (``anchor.train``, ``anchor.score``, ``anchor.caption``) ask."""
    import torch

    model = r.build(lambda: build_anchor(r.tiny))
    vision_cfg, qformer_cfg, text_cfg = model.configs
    q, s = model.num_queries, r.sizes
    size = vision_cfg.image_size
    if "anchor.train" in sections:
        with r.section("anchor.train"):
            r.require_time()
            model.train()
            model.vision.eval()
            ids = r.ids(s.train_batch, s.text_tokens, text_cfg.vocab_size, text_cfg.bos_token_id)
            pix = r.pixels(s.train_batch, size)
            optimizer = _optimizer(r, [p for p in model.parameters() if p.requires_grad])

            def step() -> None:
                model.loss(pix, ids).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            r.reset_memory()
            timing = r.time_it(step)
            r.results["anchor"]["train"] = r.figure(
                s.train_batch / timing["seconds"], "samples/s",
                F.anchor_train_sample(vision_cfg, qformer_cfg, text_cfg, q, s.text_tokens), s.train_batch,
                llm_tokens=q + s.text_tokens, **timing)
            optimizer = None
    model.eval()
    if "anchor.score" in sections:
        with r.section("anchor.score"), torch.inference_mode():
            r.require_time()
            ids = r.ids(s.score_batch, s.prompt_tokens, text_cfg.vocab_size, text_cfg.bos_token_id)
            pix = r.pixels(s.score_batch, size)
            r.reset_memory()
            timing = r.time_it(lambda: model.p_yes(pix, ids, 10))
            r.results["anchor"]["score"] = r.figure(
                s.score_batch / timing["seconds"], "images/s",
                F.anchor_score_sample(vision_cfg, qformer_cfg, text_cfg, q, s.prompt_tokens), s.score_batch,
                llm_tokens=q + s.prompt_tokens, **timing)
    if "anchor.caption" in sections:
        with r.section("anchor.caption"), torch.inference_mode():
            r.require_time()
            b = s.anchor_caption_batch
            ids = r.ids(b, 1 + s.caption_prompt_tokens, text_cfg.vocab_size, text_cfg.bos_token_id)
            pix = r.pixels(b, size)
            r.reset_memory()
            timing = r.time_it(lambda: model.caption(pix, ids, s.new_tokens), warmup=1, iters=2)
            r.results["anchor"]["caption"] = r.figure(
                b / timing["seconds"], "images/s",
                F.blip2_caption_sample(vision_cfg, qformer_cfg, text_cfg, q, 1 + s.caption_prompt_tokens,
                                       s.new_tokens), b, new_tokens=s.new_tokens, **timing)


# --- comparison, table, docs -----------------------------------------------------------------------------

COMPARISONS = (
    # (label, I-FAS / BLIP-2 figure, anchor figure, target key or None)
    ("scoring (images/s)", ("ifas", "score"), ("anchor", "score"), "score_fraction"),
    ("training, LLM frozen (samples/s)", ("ifas", "train_frozen"), ("anchor", "train"), "train_frozen_fraction"),
    ("training, LLM frozen, reference path", ("ifas", "train_frozen_reference"), ("anchor", "train"), None),
    ("training, LoRA (samples/s)", ("ifas", "train_lora"), ("anchor", "train"), None),
    ("training, LLM full (samples/s)", ("ifas", "train_full"), ("anchor", "train"), "train_full_fraction"),
    ("training, QLoRA (samples/s; its own batch, no ratio)", ("ifas", "train_qlora"), ("anchor", "train"),
     "qlora_peak_gib"),
    ("captioning BLIP-2, fast path (images/s)", ("blip2", "caption_fast"), ("anchor", "caption"),
     "caption_ratio_to_anchor"),
    ("captioning BLIP-2, plain generate", ("blip2", "caption_reference"), ("anchor", "caption"), None),
)


def compare(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of figure vs anchor (same run): ratio, fraction of the matmul rate, target and whether it is met.

    The ratio is given only where the figure and the anchor's were measured at the same batch, except for the
    captioning target, which is defined as the fast path at its batch against the anchor's ``generate`` at 64.
    """
    rows = []
    for label, (g, k), (ag, ak), target in COMPARISONS:
        fig, anchor = (results.get(g) or {}).get(k), (results.get(ag) or {}).get(ak)
        if fig is None:
            continue
        comparable = anchor is not None and (target == "caption_ratio_to_anchor"
                                             or fig.get("batch") == anchor.get("batch"))
        row = {"label": label, "key": f"{g}.{k}", "anchor_key": f"{ag}.{ak}", "value": fig["value"], "unit": fig["unit"], "batch": fig.get("batch"),
               "fraction_of_matmul": fig.get("fraction_of_matmul"), "peak_memory_gib": fig.get("peak_memory_gib"),
               "anchor_value": anchor["value"] if anchor else None,
               "anchor_fraction_of_matmul": anchor.get("fraction_of_matmul") if anchor else None,
               "ratio_to_anchor": fig["value"] / anchor["value"] if comparable else None,
               "target": None, "target_met": None}
        if target is not None:
            goal = TARGETS[target]
            if target == "caption_ratio_to_anchor":
                have = row["ratio_to_anchor"]
                row["target"] = f">= {goal:g}x anchor"
            elif target == "qlora_peak_gib":
                have = fig.get("peak_memory_gib")
                row["target"] = f"peak <= {goal:g} GiB"
            else:
                have = fig.get("fraction_of_matmul")
                row["target"] = f">= {goal:.0%} of matmul"
            if have is not None and results["meta"]["mode"] != "tiny":  # a tiny run says nothing of the targets
                row["target_met"] = bool(have <= goal) if target == "qlora_peak_gib" else bool(have >= goal)
        rows.append(row)
    return rows


def _fmt(x: Any, spec: str = ".3g") -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    return format(x, spec)


def print_table(results: dict[str, Any]) -> None:
    """A rich table of the comparison rows."""
    from rich.console import Console
    from rich.table import Table

    meta = results["meta"]
    mm = results.get("matmul") or {}
    title = (f"{meta['card']} | torch {meta['torch']} | transformers {meta['transformers']} | "
             f"matmul {_fmt(mm.get('tflops'), '.4g')} TFLOP/s | mode {meta['mode']}")
    table = Table(title=title)
    for col in ("measurement", "value", "anchor", "ratio", "of matmul", "anchor of matmul", "peak GiB", "target",
                "met"):
        table.add_column(col, justify="left" if col in ("measurement", "target") else "right")
    for row in results.get("comparison") or ():
        table.add_row(row["label"], _fmt(row["value"]), _fmt(row["anchor_value"]), _fmt(row["ratio_to_anchor"], ".2f"),
                      _fmt(row["fraction_of_matmul"], ".1%"), _fmt(row["anchor_fraction_of_matmul"], ".1%"),
                      _fmt(row["peak_memory_gib"], ".1f"), row["target"] or "", _fmt(row["target_met"]))
    console = Console(width=200)
    for line in (gpu_figures_line(meta), runs_line(results), run_status_line(results)):
        if line:
            console.print(line, markup=False)
    if not measured_anything(results):
        console.print(nothing_measured_line(results), markup=False)
        return
    if results.get("comparison"):
        console.print(table)
    for line in (anchor_line(results), pipeline_line(results), *feed_lines(results)):
        if line:
            console.print(line, markup=False)
    for key, why in not_measured(results):
        console.print(f"not measured {key}: {why}", markup=False)
    for name, why in _unlisted(results, "skipped"):
        console.print(f"skipped {name}: {why}", markup=False)
    for name, err in _unlisted(results, "errors"):
        console.print(f"ERROR {name}: {err.splitlines()[0]}", markup=False)


def run_status_line(results: dict[str, Any]) -> str:
    """One sentence when the run did not finish (cut off by a time limit or killed); else empty."""
    meta = results["meta"]
    if meta.get("finished") is not False:  # finished, or a JSON written before this field existed
        return ""
    where = f" inside `{meta['running']}`" if meta.get("running") else " between two sections"
    return (f"This run did not finish: it ended{where} (cut off by a time limit, or killed). The figures below "
            "are the ones it measured before; the sections it did not measure are listed below the table.")


def _missing_figures(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure key, section) for each figure of a requested section that ``results`` lacks, in request order."""
    return [(g if k is None else f"{g}.{k}", section) for section in results["meta"].get("requested") or ()
            for g, k in SECTION_FIGURES.get(section, ()) if not _has_figure(results, g, k)]


def _why_missing(results: dict[str, Any], key: str, section: str) -> tuple[str, str | None]:
    """Why figure ``key`` of ``section`` is missing, and the skipped/errors entry that says so (if any)."""
    meta = results["meta"]
    skipped, errors = results.get("skipped") or {}, results.get("errors") or {}
    parent = PARENT_SECTION.get(section)
    for entry in dict.fromkeys(e for e in (key, section, parent) if e):
        prefix = "" if entry in (key, section) else f"`{entry}` "
        if entry in skipped:
            return f"{prefix}skipped: {skipped[entry]}", entry
        if entry in errors:
            return f"{prefix}failed: {errors[entry].splitlines()[0]}", entry
    if meta.get("finished") is False:
        if meta.get("running") in (section, key):
            return "cut off: the run ended while this section was running", None
        where = f"inside `{meta['running']}`" if meta.get("running") else "between two sections"
        return f"not reached: the run ended {where}", None
    if meta.get("runs"):
        return "not measured: the run that asked for it did not reach it, and no later run asked again", None
    return "no figure and no reason recorded", None


def not_measured(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure key, why) for each figure of a requested section that the run has not measured.

    Why is one of: skipped (with the recorded reason, e.g. the time budget or a missing library), failed (the
    error's first line), not run because the section building its model was skipped or failed, cut off while
    running, or not reached. Runs written before ``meta.requested`` existed give an empty list.
    """
    return [(key, _why_missing(results, key, section)[0]) for key, section in _missing_figures(results)]


def _unlisted(results: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    """Entries of ``results[kind]`` ("skipped" or "errors") that no `not_measured` line already gives."""
    used = {_why_missing(results, key, section)[1] for key, section in _missing_figures(results)}
    return [(name, why) for name, why in (results.get(kind) or {}).items() if name not in used]


def anchor_line(results: dict[str, Any]) -> str:
    """The anchor's own figures in one sentence (shown even when an I-FAS counterpart is missing): "same run"
    for one run's file; in a merged file each figure names the run that measured it."""
    anchor = results.get("anchor") or {}
    merged = bool(merged_runs(results))
    parts = []
    for key, what in (("train", "training"), ("score", "scoring"), ("caption", "captioning with `generate`")):
        fig = anchor.get(key)
        if not fig:
            continue
        extra = [f"{_fmt(fig.get('fraction_of_matmul'), '.1%')} of matmul"]
        if fig.get("peak_memory_gib") is not None:
            extra.append(f"peak {_fmt(fig['peak_memory_gib'], '.1f')} GiB")
        if merged:
            extra.insert(0, f"run {run_of(results, f'anchor.{key}') or '?'}")
        parts.append(f"{what} {_fmt(fig['value'])} {fig['unit']} at batch {fig.get('batch')} ({', '.join(extra)})")
    if not parts:
        return ""
    return f"Anchor{' (each figure with the run that measured it)' if merged else ', same run'}: {'; '.join(parts)}."


def pipeline_line(results: dict[str, Any]) -> str:
    """One sentence comparing the CPU image pipeline's rate with the GPU scoring rate of the same run."""
    p = results.get("pipeline")
    if not p:
        return ""
    score = (results.get("ifas") or {}).get("score") or {}
    device = str((results.get("meta") or {}).get("device") or "")
    scoring = "GPU scoring" if device.startswith("cuda") else f"scoring on {device or 'this device'}"
    versus = (f"; {scoring} needs {_fmt(score['value'])} images/s "
              f"({'kept up with' if p['images_per_s'] >= score['value'] else 'NOT kept up with'})"
              if score.get("value") else "")
    return (f"CPU image pipeline (PNG decoding + CLIP preprocessing, batches of {p['batch']}): "
            f"{_fmt(p['images_per_s'])} images/s on {p['threads']} threads ({p['cpu_count']} CPUs), "
            f"{_fmt(p['images_per_s_one_thread'])} on one{versus}.")


def feed_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per host path measured (`measure_feed`): its feed rate, the kernel figure it feeds
    (`FEED_KERNELS`, when the results have it) and the path's ceiling min(kernel, feed), with which limits it."""
    feed = results.get("feed") or {}
    rows = []
    for path in FEED_PATHS:
        fig = feed.get(path)
        if not fig:
            continue
        group, key = FEED_KERNELS[path]
        kernel = (results.get(group) or {}).get(key) or {}
        kv = kernel.get("value")
        rows.append({"path": path, "key": f"feed.{path}", "label": FEED_LABELS[path], "value": fig["value"],
                     "unit": fig.get("unit", "images/s"), "batch": fig.get("batch"), "threads": fig.get("threads"),
                     "workers": fig.get("workers"), "cpu_count": fig.get("cpu_count"),
                     "kernel_key": f"{group}.{key}", "kernel_value": kv, "kernel_unit": kernel.get("unit"),
                     "ceiling": min(kv, fig["value"]) if kv else None,
                     "limited_by": None if not kv else ("host feed" if fig["value"] < kv else "kernel")})
    return rows


def _feed_workers(row: dict[str, Any]) -> str:
    if row.get("workers") is not None:
        return f"{row['workers']} DataLoader workers"
    threads = row.get("threads")
    return "main thread (0 threads)" if threads == 0 else f"{threads} threads"


def feed_markdown(results: dict[str, Any]) -> list[str]:
    """The host-feed table of the results block (empty without feed figures)."""
    rows = results.get("feed_vs_kernel")
    if rows is None:
        rows = feed_rows(results)
    if not rows:
        return []
    first = (results.get("feed") or {}).get(rows[0]["path"]) or {}
    merged = bool(merged_runs(results))
    lines = [f"Host feed on the run's host ({rows[0].get('cpu_count')} CPUs): images/s the CLIs' default data paths "
             f"deliver into device copies with the model a no-op, from synthetic 224 x 224 PNG rows "
             f"({_fmt(first.get('png_kib_mean'))} KiB each); a path's ceiling is min(kernel, feed)"
             + (" (the runs column: feed / kernel)" if merged else "") + ".", "",
             "| host path | feed (images/s) | batch | threads / workers | kernel figure | kernel | ceiling | limited by |"
             + (" runs |" if merged else ""),
             "|---|---:|---:|---|---|---:|---:|---|" + ("---|" if merged else "")]
    for row in rows:
        runs = ""
        if merged:
            kernel_run = run_of(results, row["kernel_key"]) if row["kernel_value"] is not None else None
            runs = f" {run_of(results, row['key']) or '?'} / {kernel_run or '-'} |"
        lines.append(f"| {row['label']} | {_fmt(row['value'])} | {row.get('batch')} | {_feed_workers(row)} | "
                     f"`{row['kernel_key']}` | {_fmt(row['kernel_value'])} | {_fmt(row['ceiling'])} | "
                     f"{row['limited_by'] or 'no kernel figure'} |{runs}")
    return lines


def feed_lines(results: dict[str, Any]) -> list[str]:
    """The host-feed figures as plain lines (the terminal table's companion)."""
    rows = results.get("feed_vs_kernel")
    if rows is None:
        rows = feed_rows(results)
    out = []
    for row in rows:
        kernel = (f"; kernel {row['kernel_key']} {_fmt(row['kernel_value'])} -> ceiling {_fmt(row['ceiling'])} "
                  f"(limited by {row['limited_by']})" if row["kernel_value"] else f"; no {row['kernel_key']} figure")
        out.append(f"host feed {row['path']}: {_fmt(row['value'])} images/s at batch {row.get('batch')} on "
                   f"{_feed_workers(row)} ({row.get('cpu_count')} CPUs){kernel}")
    return out


def results_markdown(results: dict[str, Any]) -> str:
    """The results block of docs/benchmarks.md, from one run's JSON."""
    meta = results["meta"]
    mm = results.get("matmul") or {}
    lines = [f"Run of {meta['date']} on **{meta['card']}**"
             + (f" ({meta.get('card_memory_gib')} GiB, CUDA {meta.get('cuda')})" if meta.get("cuda") else "")
             + f"; Python {meta['python']}, torch {meta['torch']}, transformers {meta['transformers']}, "
             f"peft {meta.get('peft') or 'not installed'}, bitsandbytes {meta.get('bitsandbytes') or 'not installed'}"
             + (f" (the carried copy does not import: {meta['carried_bitsandbytes_error']})"
                if meta.get("carried_bitsandbytes_error") else "")
             + (f"; commit {meta['git_commit']}" if meta.get("git_commit") else "")
             + (" (run 1; each run's below)" if meta.get("git_commit") and merged_runs(results) else "")
             + ".", "",
             f"Command: `{meta['command']}`", ""]
    gpu_state = gpu_figures_line(meta)
    if gpu_state:
        lines += [f"**{gpu_state}**", ""]
    merged_line = runs_line(results)
    if merged_line:
        lines += [merged_line, ""]
    ended = run_status_line(results)
    if ended:
        lines += [f"**{ended}**", ""]
    if not measured_anything(results):
        lines.append(nothing_measured_line(results))
        return "\n".join(lines) + "\n"
    merged = bool(merged_runs(results))
    if mm:
        which = matmul_run(results)
        of_run = f" of run {which}" if which else ""
        own = " (each figure's fraction of matmul uses its own run's ceiling)" if merged else ""
        lines += [f"Measured matmul ceiling{of_run} ({mm.get('dtype')} {mm.get('n')}^3): "
                  f"{_fmt(mm.get('tflops'), '.4g')} "
                  f"TFLOP/s; copy bandwidth {_fmt(mm.get('copy_tb_per_s'), '.3g')} TB/s{own}.", ""]
    else:
        lines += ["No matmul ceiling measured in this run: the fractions of matmul are blank.", ""]
    if results.get("comparison"):
        anchor_col, run_col, rule = "anchor (same run)", "", ""
        if merged:
            anchor_col, run_col, rule = "anchor", " runs (figure / anchor) |", "---|"
        lines += [f"| measurement | value | {anchor_col} | ratio | of matmul | anchor of matmul | peak GiB | target | met"
                  f" |{run_col}", f"|---|---:|---:|---:|---:|---:|---:|---|---|{rule}"]
    else:
        lines += ["No I-FAS or BLIP-2 figure in this run (each requested one is listed below with why)."]
    across = False
    for row in results.get("comparison") or ():
        ratio, runs = _fmt(row["ratio_to_anchor"], ".2f"), ""
        if merged:
            fig_run = run_of(results, row["key"])
            anchor_run = run_of(results, row["anchor_key"]) if row.get("anchor_value") is not None else None
            runs = f" {fig_run or '?'} / {anchor_run or '-'} |"
            if row["ratio_to_anchor"] is not None and fig_run != anchor_run:
                ratio, across = f"{ratio}*", True
        lines.append(f"| {row['label']} | {_fmt(row['value'])} | {_fmt(row['anchor_value'])} | "
                     f"{ratio} | {_fmt(row['fraction_of_matmul'], '.1%')} | "
                     f"{_fmt(row['anchor_fraction_of_matmul'], '.1%')} | {_fmt(row['peak_memory_gib'], '.1f')} | "
                     f"{row['target'] or ''} | {_fmt(row['target_met'])} |{runs}")
    if across:
        lines += ["", "`*` the figure and its anchor were measured in different runs (the runs column): the ratio "
                  "compares two runs, possibly on two machines of the same kind."]
    for line in (anchor_line(results), pipeline_line(results)):
        if line:
            lines += ["", line]
    feed = feed_markdown(results)
    if feed:
        lines += ["", *feed]
    cap = (results.get("blip2") or {}).get("caption_fast") or {}
    if "greedy_rows_identical_to_reference" in cap:
        rows = f" {cap['greedy_rows_compared']}" if cap.get("greedy_rows_compared") else ""
        lines += ["", f"Greedy captions of the fast path identical to plain `generate` on "
                  f"{_fmt(cap['greedy_rows_identical_to_reference'], '.1%')} of the{rows} rows compared (random weights; "
                  "see above)."]
    if cap.get("compile_s") is not None:
        lines += ["", f"Fast captioning path: {_fmt(cap['compile_s'], '.3g')} s of warm-up beyond its steady calls "
                  "(on CUDA, compiling the decoding step)."]
    missing = not_measured(results)
    if missing:
        lines += ["", "Not measured (requested, but no figure):", ""]
        lines += [f"- `{key}`: {why}" for key, why in missing]
    for name, why in _unlisted(results, "skipped"):
        lines += ["", f"Skipped `{name}`: {why}."]
    for name, err in _unlisted(results, "errors"):
        lines += ["", f"Error in `{name}`: `{err.splitlines()[0]}`."]
    return "\n".join(lines) + "\n"


def gpu_figures_line(meta: dict[str, Any]) -> str:
    """The sentence saying this run's figures are not GPU figures (a CPU run, or tiny configs); empty for a
    full-size run on CUDA. docs/benchmarks.md says whether GPU figures exist only through this line, inside the
    rendered block, so a GPU run's block never sits under a stale "none measured yet"."""
    on_gpu = str(meta.get("device") or "").startswith("cuda")
    if meta.get("mode") == "tiny" and on_gpu:
        return (f"No GPU performance figures: a smoke run of the tiny configs on {meta.get('card') or 'a GPU'}; "
                "these figures say nothing about performance.")
    if meta.get("mode") == "tiny":
        return "No GPU figures measured: a CPU smoke run of the tiny configs; these figures say nothing about performance."
    if not on_gpu:
        return (f"No GPU figures measured: this run was on {meta.get('card') or 'the CPU'} (full-size configs); "
                "its figures say nothing about the GPU targets.")
    return ""


def measured_anything(results: dict[str, Any]) -> bool:
    """Whether the run has any figure at all (matmul, pipeline, anchor, I-FAS or BLIP-2)."""
    return bool(results.get("matmul") or results.get("pipeline")
                or any((results.get(g) or {}).values() for g in ("anchor", "ifas", "blip2", "feed")))


def nothing_measured_line(results: dict[str, Any]) -> str:
    """One sentence for a run without a single figure: every requested figure with why, grouped by reason."""
    groups: dict[str, list[str]] = {}
    for key, why in not_measured(results):
        groups.setdefault(why, []).append(key)
    for name, why in _unlisted(results, "skipped"):
        groups.setdefault(f"skipped: {why}", []).append(name)
    for name, err in _unlisted(results, "errors"):
        groups.setdefault(f"failed: {err.splitlines()[0]}", []).append(name)
    reasons = "; ".join(f"{', '.join(f'`{k}`' for k in keys)}: {why}" for why, keys in groups.items())
    return f"Nothing measured: {reasons or 'no section was requested'}."


def update_docs(path: Path, results: dict[str, Any]) -> None:
    """Replace the block between the result markers of ``path`` with this run's results.

    Raises:
        ValueError: ``path`` cannot be read or has no results block (one line naming the file).
    """
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the docs file to update ({e.strerror or e})") from e
    if RESULTS_BEGIN not in text or RESULTS_END not in text:
        raise ValueError(f"{path}: no {RESULTS_BEGIN} ... {RESULTS_END} block to replace")
    head, rest = text.split(RESULTS_BEGIN, 1)
    _, tail = rest.split(RESULTS_END, 1)
    path.write_text(f"{head}{RESULTS_BEGIN}\n{results_markdown(results)}{RESULTS_END}{tail}")


# --- entry point -----------------------------------------------------------------------------------------

RUN_ORDER = ("matmul", "ifas.score", "ifas.train_frozen", "ifas.train_full", "ifas.train_lora", "ifas.train_qlora",
             "feed", "anchor.train", "anchor.score", "anchor.caption", "blip2.caption", "pipeline")
"""The measuring sections in the order they run: the matmul ceiling (every fraction needs it), then issue 8's
targets (I-FAS scoring, training LLM frozen and full at batch 32, QLoRA at batch 8; LoRA shares the I-FAS model
and comes after full), the host feed of those paths (whether the CLIs' data paths can deliver what the kernels
take; short and predictable), the anchor (its captioning figure is the captioning target's denominator), captioning
(its compile time is the one that cannot be foreseen), and the CPU image pipeline, which no target needs."""


def requested_sections(what: set[str], train_modes: tuple[str, ...]) -> list[str]:
    """The measuring sections (keys of `SECTION_FIGURES`) that ``what`` and ``train_modes`` ask for, in run order.

    ``anchor`` alone names no section: its figures are those of ``train``, ``score`` and ``caption`` asked too.
    """
    wanted = {name for name in ("matmul", "pipeline", "feed") if name in what}
    if "anchor" in what:
        wanted |= {f"anchor.{w}" for w in ("train", "score", "caption") if w in what}
    if "score" in what:
        wanted.add("ifas.score")
    if "train" in what:
        wanted |= {f"ifas.train_{m}" for m in train_modes}
    if "qlora" in what:
        wanted.add("ifas.train_qlora")
    if "caption" in what:
        wanted.add("blip2.caption")
    return [name for name in RUN_ORDER if name in wanted]


def _has_figure(results: dict[str, Any], group: str, key: str | None) -> bool:
    return bool(results.get(group) if key is None else (results.get(group) or {}).get(key))


def measured_sections(results: dict[str, Any]) -> set[str]:
    """The sections of ``results`` whose every figure is there (what a resumed run need not measure again)."""
    return {name for name, figures in SECTION_FIGURES.items() if all(_has_figure(results, g, k) for g, k in figures)}


RESUME_SIZES_IGNORED = ("iters", "warmup")
"""`Sizes` fields a resumed run may change (repetitions); every other size must match the earlier run's."""


def load_previous(path: Path) -> dict[str, Any]:
    """An earlier run's JSON for ``--resume-from``.

    Raises:
        ValueError: the file cannot be read, is not JSON, or is not a results file of this tool (one line).
    """
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"--resume-from {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from e
    if not isinstance(previous, dict) or not isinstance(previous.get("meta"), dict) or "mode" not in previous["meta"]:
        raise ValueError(f"--resume-from {path}: not a results file of tools/benchmark.py (no meta.mode)")
    return previous


def check_resumable(previous: dict[str, Any], meta: dict[str, Any], source: str) -> None:
    """Refuse to merge figures measured under different conditions: another mode, device type, card, dtype
    (``--dtype``: bf16 and fp32 figures differ several-fold) or sizes.

    Raises:
        ValueError: one line naming ``source`` and what differs.
    """
    pm = previous["meta"]
    if pm.get("mode") != meta["mode"]:
        raise ValueError(f"--resume-from {source}: a --mode {pm.get('mode')} run cannot be completed by a "
                         f"--mode {meta['mode']} run")
    kind = str(pm.get("device") or "").split(":")[0]
    if kind != meta["device"].split(":")[0] or pm.get("card") != meta["card"]:
        raise ValueError(f"--resume-from {source}: measured on {pm.get('card')} ({pm.get('device')}), this run is on "
                         f"{meta['card']} ({meta['device']}): merge only runs on the same kind of card")
    if pm.get("dtype") != meta["dtype"]:
        raise ValueError(f"--resume-from {source}: measured in {pm.get('dtype')}, this run is in {meta['dtype']}: "
                         "merge only runs in the same dtype (pass the earlier run's --dtype)")
    mine = {k: v for k, v in meta["sizes"].items() if k not in RESUME_SIZES_IGNORED}
    theirs = {k: v for k, v in (pm.get("sizes") or {}).items() if k not in RESUME_SIZES_IGNORED}
    if theirs != mine:
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ValueError(f"--resume-from {source}: its sizes differ from this run's ({', '.join(diff)})")


def run_summary(results: dict[str, Any]) -> dict[str, Any]:
    """One run's entry of ``meta.runs`` in a merged file: when, where, what it measured and its matmul ceiling."""
    meta = results["meta"]
    figures = [f"{g}.{k}" for g in ("ifas", "blip2", "anchor", "feed") for k in (results.get(g) or {})]
    figures += [g for g in ("matmul", "pipeline") if results.get(g)]
    return {"date": meta.get("date"), "card": meta.get("card"), "device": meta.get("device"),
            "dtype": meta.get("dtype"), "git_commit": meta.get("git_commit"), "command": meta.get("command"), "budget_s": meta.get("budget_s"), "finished": meta.get("finished"),
            "running": meta.get("running"), "matmul_tflops": (results.get("matmul") or {}).get("tflops"),
            "requested": meta.get("requested"), "measured": sorted(figures),
            "section_seconds": meta.get("section_seconds")}


def merge_results(previous: dict[str, Any], current: dict[str, Any], attempted: list[str]) -> dict[str, Any]:
    """``previous`` completed by ``current`` (a ``--resume-from`` run that measured the ``attempted`` sections).

    Figures: the earlier ones, plus the new ones (a resumed run measures only what the earlier run lacks); the
    top-level ``matmul`` stays the earlier run's when it has one (each figure keeps the fraction of matmul of the
    run that measured it). ``skipped``/``errors``: the earlier entries for the attempted sections (and the
    builds they run in) are replaced by what this run recorded. ``meta`` is the first run's, with ``runs`` (one
    `run_summary` per run), ``requested`` (the union) and the state (``finished``, ``running``) of this run.
    """
    import copy

    merged = copy.deepcopy(previous)
    merged.pop("comparison", None)
    merged.pop("feed_vs_kernel", None)
    meta = merged["meta"]
    runs = meta.get("runs") or [run_summary(previous)]
    meta["runs"] = [*runs, run_summary(current)]
    cm = current["meta"]
    asked = set(meta.get("requested") or ()) | set(cm.get("requested") or ())
    meta["requested"] = [name for name in RUN_ORDER if name in asked]
    meta.update(finished=cm.get("finished"), running=cm.get("running"))
    for key in ("section_start_s", "section_seconds", "memory_at_start_gib"):
        meta[key] = {**(meta.get(key) or {}), **(cm.get(key) or {})}
    for group in ("ifas", "blip2", "anchor", "feed"):
        merged[group] = {**(previous.get(group) or {}), **(current.get(group) or {})}
    merged["matmul"] = previous.get("matmul") or current.get("matmul")
    merged["pipeline"] = current.get("pipeline") or previous.get("pipeline")
    replaced = set(attempted) | {PARENT_SECTION.get(name) for name in attempted}
    replaced |= {g if k is None else f"{g}.{k}" for name in attempted for g, k in SECTION_FIGURES.get(name, ())}
    for kind in ("skipped", "errors"):
        merged[kind] = {**{k: v for k, v in (previous.get(kind) or {}).items() if k not in replaced},
                        **(current.get(kind) or {})}
    return merged


def merged_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """``meta.runs`` of a merged file (``--resume-from``: two runs or more); empty for one run's file."""
    runs = results["meta"].get("runs") or []
    return runs if len(runs) > 1 else []


def runs_line(results: dict[str, Any]) -> str:
    """For a merged file (``--resume-from``), one paragraph naming each run and what it measured; else empty."""
    runs = merged_runs(results)
    if not runs:
        return ""
    parts = []
    for i, one in enumerate(runs, 1):
        state = "" if one.get("finished") is not False else f", did not finish (ended in `{one.get('running')}`)"
        ceiling = f", matmul {_fmt(one.get('matmul_tflops'), '.4g')} TFLOP/s" if one.get("matmul_tflops") else ""
        where = ", ".join(x for x in (f"commit {one['git_commit']}" if one.get("git_commit") else "",
                                      one.get("dtype") or "") if x)
        parts.append(f"run {i} of {one.get('date')} on {one.get('card')}{f' ({where})' if where else ''}"
                     f"{ceiling}{state} measured "
                     f"{', '.join(f'`{k}`' for k in one.get('measured') or ()) or 'nothing'}")
    return (f"Merged from {len(runs)} runs (`--resume-from`: each later run measured only what the earlier ones "
            f"lacked): {'; '.join(parts)}. Each figure's fraction of matmul uses the ceiling of the run that "
            "measured it; a ratio to the anchor whose two figures come from different runs (marked `*` in the table) "
            "compares two runs, possibly on two machines of the same kind.")


def run_of(results: dict[str, Any], key: str) -> int | None:
    """For a merged file, the 1-based index of the run that measured figure ``key`` (e.g. ``"anchor.score"``):
    the last run listing it, as `merge_results` lets a later run's figure replace an earlier one; None when
    the file is not merged or no run lists it."""
    runs = merged_runs(results)
    found = [i for i, one in enumerate(runs, 1) if key in (one.get("measured") or ())]
    return found[-1] if found else None


def matmul_run(results: dict[str, Any]) -> int | None:
    """For a merged file, the 1-based index of the run whose matmul ceiling is the top-level ``matmul``: the
    first run that measured one (`merge_results` keeps the earliest); None when not merged or none did."""
    runs = merged_runs(results)
    return next((i for i, one in enumerate(runs, 1) if one.get("matmul_tflops")), None)


def run(mode: str = "tiny", device: str | None = None, what: tuple[str, ...] = WHAT,
        train_modes: tuple[str, ...] = TRAIN_MODES, out: Path | None = None, sizes: Sizes | None = None,
        dtype: str = "auto", budget_s: float | None = None, started: float | None = None,
        resume_from: Path | None = None) -> dict[str, Any]:
    """Run the benchmark and return its results (also written to ``out`` after every section).

    Args:
        mode: "tiny" (tiny configs, seconds on CPU) or "full" (the real-size architectures).
        device: torch device; default CUDA when available, else CPU.
        what: sections to run, a subset of `WHAT`.
        train_modes: LLM training modes to measure, a subset of `TRAIN_MODES`.
        out: JSON path, rewritten at the start and end of every section (a crash or timeout keeps what was measured and where it stopped).
        sizes: batch sizes and lengths; default `Sizes()` for full, `TINY_SIZES` for tiny.
        dtype: "auto" (bf16 on CUDA, fp32 on CPU), "bf16" or "fp32" (bf16 on CPU checks the GPU's dtype paths).
        budget_s: seconds the whole run may take, counted from ``started``; a section that `NEED_S` says
            would not fit in what is left is skipped, with the reason under ``skipped`` (None: no limit).
        started: ``time.monotonic()`` the budget counts from (default: now; the CLI passes its process start).
        resume_from: an earlier run's JSON (same mode, card and sizes): only the requested sections it lacks
            are measured (and the matmul ceiling again, for their fractions), and the results returned and
            written are that file merged with this run's (`merge_results`). ``out`` may be the same file.

    Raises:
        ValueError: an unknown section or mode, or a ``resume_from`` that cannot be read or merged (one line).

    The order is `RUN_ORDER`: matmul, I-FAS scoring and training, QLoRA (issue 8's targets first), the host
    feed of those paths, the anchor,
    captioning (whose compile time is the least predictable, so a slow compile cannot cost the figures before
    it), the CPU image pipeline. ``meta.requested`` lists the sections asked for, so that a cut-off run's report
    names what it lacks.
    """
    import torch

    unknown = set(what) - set(WHAT)
    if unknown:
        raise ValueError(f"unknown --what {sorted(unknown)}; choose from {', '.join(WHAT)}")
    if set(train_modes) - set(TRAIN_MODES):
        raise ValueError(f"unknown --train-modes {sorted(set(train_modes) - set(TRAIN_MODES))}")
    previous = load_previous(resume_from) if resume_from is not None else None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    sizes = sizes or (TINY_SIZES if mode == "tiny" else Sizes())
    r = Runner(mode, device, out, sizes, dtype, budget_s=budget_s, started=started)
    requested = requested_sections(set(what), train_modes)
    r.results["meta"]["requested"] = requested
    todo = list(requested)
    caption_parts = frozenset({"reference", "fast"})
    if previous is not None:
        check_resumable(previous, r.results["meta"], str(resume_from))
        done = measured_sections(previous)
        todo = [name for name in requested if name not in done]
        caption_parts = frozenset(p for p in ("reference", "fast") if not _has_figure(previous, "blip2", f"caption_{p}"))
        if set(todo) - {"matmul", "pipeline", "feed"} and "matmul" not in todo:
            todo.insert(0, "matmul")  # the ceiling of the new figures' fractions, measured on this machine
        logger.info("resuming %s: %s already measured; measuring %s", resume_from,
                    ", ".join(sorted(done & set(requested))) or "nothing", ", ".join(todo) or "nothing")
        r.previous, r.attempted = previous, todo
    torch.manual_seed(0)
    if r.cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    if "matmul" in todo:
        with r.section("matmul"):
            r.require_time()
            measure_matmul(r)
    if any(name.startswith("ifas.") and name != "ifas.train_qlora" for name in todo):
        with r.section("ifas.build"):
            r.require_time()
            measure_ifas(r, set(todo))
    if "ifas.train_qlora" in todo:
        with r.section("ifas.train_qlora"):
            measure_qlora(r)
    if "feed" in todo:
        with r.section("feed"):
            measure_feed(r)
    if any(name.startswith("anchor.") for name in todo):
        with r.section("anchor.build"):
            r.require_time()
            measure_anchor(r, set(todo))
    if "blip2.caption" in todo:  # after the targets' other figures: its length (a compile) is open-ended
        with r.section("blip2.caption"):
            measure_caption(r, caption_parts)
    if "pipeline" in todo:
        with r.section("pipeline"):
            r.require_time()
            measure_pipeline(r)
    r.results["meta"]["finished"] = True
    results = r.merged()
    results["comparison"] = compare(results)
    results["feed_vs_kernel"] = feed_rows(results)
    results["targets"] = TARGETS
    r.write(results)
    return results


def _write_docs(path: Path | None, results: dict[str, Any]) -> int:
    """`update_docs` for the CLI: 0, or 2 after one line on stderr (the JSON is written already)."""
    if path is None:
        return 0
    try:
        update_docs(path, results)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("tiny", "full"), default="full")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--what", default=",".join(WHAT), help=f"comma-separated sections: {', '.join(WHAT)}")
    parser.add_argument("--train-modes", default=",".join(TRAIN_MODES), help="LLM modes to train: frozen,lora,full")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (rewritten at the start and end of every section)")
    parser.add_argument("--docs", type=Path, default=None,
                        help="markdown file whose results block is regenerated (docs/benchmarks.md)")
    parser.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto",
                        help="weights' dtype: auto = bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--iters", type=int, default=None, help="timed repetitions per figure (default 5; 2 with --mode tiny)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds the whole run may take from its start (gpu_check.sh sets it below its own "
                             "time limit): a section that would not fit is skipped with the reason, not cut off")
    parser.add_argument("--resume-from", type=Path, default=None,
                        help="an earlier run's JSON (same mode, card, sizes): measure only the requested sections it "
                             "lacks and write it merged with them (--out may be the same file)")
    parser.add_argument("--render", type=Path, default=None,
                        help="measure nothing: print the table of this JSON (a finished or cut-off run) and "
                             "regenerate --docs from it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.render:
        try:
            results = json.loads(args.render.read_text())
        except (OSError, ValueError) as e:
            print(f"error: cannot read {args.render}: {e}", file=sys.stderr)
            return 2
        results["comparison"] = compare(results)  # a run cut off before its end has none yet
        results["feed_vs_kernel"] = feed_rows(results)
        print_table(results)
        return _write_docs(args.docs, results)
    sizes = TINY_SIZES if args.mode == "tiny" else Sizes()
    if args.iters:
        sizes = Sizes(**{**sizes.__dict__, "iters": args.iters})
    try:
        results = run(args.mode, args.device, tuple(w for w in args.what.split(",") if w),
                      tuple(m for m in args.train_modes.split(",") if m), args.out, sizes, args.dtype,
                      budget_s=args.budget_s, started=_PROCESS_START, resume_from=args.resume_from)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_table(results)
    if _write_docs(args.docs, results):
        return 2
    print(json.dumps({"comparison": results["comparison"], "errors": list(results["errors"])}, default=str))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
