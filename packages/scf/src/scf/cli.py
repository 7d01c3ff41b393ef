"""The `scf` command line: sample, ingest, caption."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from scf.captioning.captioner import DTYPE_CHOICES  # a constant: the module imports nothing heavy

F = TypeVar("F", bound=Callable[..., Any])

VERBOSE_HELP = "Debug logging (also accepted before the command: scf -v ingest ...)."
QUIET_LOGGERS = ("httpx", "urllib3", "filelock", "fsspec", "datasets", "huggingface_hub", "matplotlib", "PIL")
"""Libraries kept at WARNING under -v, as the ifas-* commands do: their debug lines would bury scf's."""


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:  # noqa: ARG001 - click callback
    """``-v/--verbose``: the root logger at DEBUG (the ifas-* commands' meaning), chatty libraries at WARNING."""
    if not value:
        return
    logging.getLogger().setLevel(logging.DEBUG)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def verbose_option(func: F) -> F:
    """The ``-v/--verbose`` flag of the scf group and of each scf command (it takes effect where it is given)."""
    return click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_set_verbose,
                        help=VERBOSE_HELP)(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})  # as ifas-*
@click.version_option(package_name="ifas-scf", prog_name="scf", message="%(prog)s (%(package)s) %(version)s")
@verbose_option
def main() -> None:
    """Spoof-aware Captioning and Filtering (SCF) for interpretable face anti-spoofing."""
    from rich.logging import RichHandler

    level = logging.DEBUG if logging.getLogger().level == logging.DEBUG else logging.INFO  # scf -v: set already
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(show_path=False)])
    # bitsandbytes (imported with peft) warns on every CPU start that an optional Hub kernel is missing
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)



@main.command("sample")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder to write the dataset to.")
@click.option("--as-files", is_flag=True,
              help="Write JPEG files and a CSV manifest per domain (to try `scf ingest --source csv` on), "
                   "instead of the benchmark dataset.")
@click.option("--seed", type=int, default=0, show_default=True, help="The sample is deterministic for a seed.")
@click.option("--frames-per-video", type=click.IntRange(1, 50), default=2, show_default=True,
              help="Frames per synthetic video.")
@verbose_option
def sample_command(out: str, as_files: bool, seed: int, frames_per_video: int) -> None:
    """Write the embedded SYNTHETIC sample as a benchmark dataset (offline, no licence needed).

    Public-domain face photos rendered as print and replay attacks in four synthetic capture domains.
    """
    from rich.console import Console

    from scf.sample import write_sample, write_sample_files

    if as_files:
        folders = write_sample_files(out, seed, frames_per_video=frames_per_video)
        Console().print(f"[bold]synthetic sample[/] (seed {seed}) written as files to {out}: "
                        + ", ".join(f"{f.name}/manifest.csv" for f in folders))
        return
    path = write_sample(out, seed, frames_per_video=frames_per_video)
    Console().print(f"[bold]synthetic sample[/] (seed {seed}) written to {path}; "
                    f"load it with datasets.load_dataset({str(path)!r})")


@main.command("ingest")
@click.option("--source", default=None, help="Dataset or generic reader (see --list-sources).")
@click.option("--root", type=click.Path(), default=None, help="The dataset as you hold it.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Dataset folder (data/<split>-NNNNN.parquet + README.md); with --config, the parent folder.")
@click.option("--config", "config_name", default=None,
              help="Write to OUT/<CONFIG>/ as one config of a multi-source Hub dataset (OUT/README.md lists them).")
@click.option("--source-name", default=None,
              help="Value of the `source` column (default: the dataset's name; set it for your own data with "
                   "the generic readers, as the protocols select training and test data by source).")
@click.option("--list", "lists", multiple=True, type=click.Path(dir_okay=False),
              help="List, protocol or manifest file (repeatable): CASIA-FAS lists, FLIP txt lists, WMCA CSV, manifest.")
@click.option("--label-polarity", type=click.Choice(["live0", "live1"]), default=None,
              help="CASIA-FAS lists: which list label means live (required with those lists).")
@click.option("--split", type=click.Choice(["train", "dev", "test"]), default=None,
              help="Split for items that no naming rule or protocol file places.")
@click.option("--celeba-labels", "celeba_labels", multiple=True, type=click.Path(),
              help="CelebA-Spoof's train_label.json / test_label.json (or a folder holding them, e.g. "
                   "metas/intra_test): spoof types for CelebA-Spoof rows read from FLIP or CASIA-FAS lists "
                   "(repeatable).")
@click.option("--frames", default="flip", show_default=True,
              help="Video frames: 'flip' (frames 6 and 6 + n/2) or a number k of equidistant frames.")
@click.option("--detect/--no-detect", "--face-detection/--no-face-detection", "detect", default=None,
              help="Face detection (--no-face-detection: the spelling of ifas-predict, accepted too). Default: on; "
                   "off for the pre-cropped readers flip-mcio and casia-fas-list, and for a dataset reader given "
                   "CASIA-FAS --list files (pre-cropped frames; OULU-NPU protocol files and the WMCA grand-test "
                   "CSV name raw videos: on).")
@click.option("--margin", type=float, default=0.2, show_default=True, help="Crop margin, fraction of the face box.")
@click.option("--size", type=int, default=224, show_default=True, help="Output side in pixels.")
@click.option("--neighbours", type=click.IntRange(0), default=3, show_default=True,
              help="Frames tried on each side of a sampled frame without a face.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="Worker processes.")
@click.option("--shard-size", type=click.IntRange(1), default=1000, show_default=True, help="Rows per parquet shard.")
@click.option("--image-format", type=click.Choice(["png", "jpeg"]), default="png", show_default=True,
              help="Crop encoding: png (lossless, as FLIP's crops) or jpeg (quality 95, several times smaller).")
@click.option("--push-to-hub", "push_to_hub", default=None, metavar="ORG/NAME",
              help="Upload OUT to this Hub dataset repo when done (token from HF_TOKEN or hf auth login).")
@click.option("--public", is_flag=True,
              help="Create the Hub repo public (default: private; FAS datasets are licensed per request, so make "
                   "it public only if every source's licence allows that).")
@click.option("--private", is_flag=True, hidden=True, help="Accepted for old commands: private is the default.")
@click.option("--prune-missing", is_flag=True,
              help="On a resume, drop the rows of files no longer found under --root (moved, renamed, deleted).")
@click.option("--list-sources", is_flag=True, help="List the sources and their expected layouts, then exit.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@verbose_option
def ingest_command(source: str | None, root: str | None, out: str | None, config_name: str | None,
                   source_name: str | None, lists: tuple[str, ...], label_polarity: str | None, split: str | None,
                   celeba_labels: tuple[str, ...], frames: str,
                   detect: bool | None, margin: float, size: int, neighbours: int, workers: int, shard_size: int,
                   image_format: str, push_to_hub: str | None, public: bool, private: bool, prune_missing: bool,
                   list_sources: bool, no_progress: bool) -> None:
    """Turn a FAS dataset (as delivered, or as FLIP / CASIA-FAS lists) into the benchmark dataset.

    Resumable: rerun the same command after an interruption. See docs/ingest.md.
    """
    from scf.ingest.command import ingest_main

    ingest_main(source=source, root=root, out=out, config_name=config_name, source_name=source_name, lists=lists,
                label_polarity=label_polarity, split=split, celeba_labels=celeba_labels, frames=frames,
                detect=detect, margin=margin,
                size=size, neighbours=neighbours, workers=workers, shard_size=shard_size,
                image_format=image_format, push_to_hub=push_to_hub, public=public, private=private,
                list_sources=list_sources, no_progress=no_progress, prune_missing=prune_missing)


@main.command("caption")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Output folder: one subfolder per stage, the VQA corpus in OUT/corpus.")
@click.option("--split", "split", type=click.Choice(["fake", "real", "all"]), default="all", show_default=True,
              help="fake: general captions, filter, fine-tune C_S, spoof-aware captions of the fakes; "
                   "real: general captions of the reals; all: both, then the corpus.")
@click.option("--stage", type=click.Choice(["general", "filter", "finetune", "spoof", "corpus"]), default=None,
              help="Run only this stage (default: every stage of --split).")
@click.option("--dataset", default=None, help="Benchmark dataset: Hub id or local folder (default: embedded sample).")
@click.option("--splits", default=None, help="Comma-separated dataset splits to caption (default: all).")
@click.option("--preset", type=click.Choice(["default", "tiny"]), default="default", show_default=True,
              help="default: Salesforce/blip2-opt-2.7b; tiny: random tiny BLIP-2 built offline (captions are noise).")
@click.option("--captioner", default=None, help="General captioner C_G: Hub id or local BLIP-2 folder (overrides --preset).")
@click.option("--keywords", "keywords_file", type=click.Path(dir_okay=False), default=None,
              help="YAML keyword file extending (mode: extend) or replacing (mode: replace) the default dictionary.")
@click.option("--interpretation", type=click.Choice(["spoof", "general", "none"]), default="spoof", show_default=True,
              help="Fakes' interpretation: spoof = T_S (the paper), general = T_F, none = judgment only (Table 4 ablations).")
@click.option("--prompt", default="a photo of", show_default=True, help="Decoding and fine-tuning prompt.")
@click.option("--max-new-tokens", type=click.IntRange(1), default=30, show_default=True,
              help="Caption length cap in tokens (general and spoof-aware captions).")
@click.option("--min-new-tokens", type=click.IntRange(0), default=8, show_default=True,
              help="Shortest caption in tokens (no end-of-caption before that).")
@click.option("--num-beams", type=click.IntRange(1), default=1, show_default=True, help="1 = greedy.")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Captioning stages (general, spoof): images per generate call (default: 256 on a GPU, where "
                   "the static-cache decoding step is compiled once for that batch; 32 on CPU). For C_S "
                   "fine-tuning see --ft-batch-size.")
@click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True,
              help="Captioner weights: auto = bf16 on a CUDA GPU that has it (else fp16), fp32 on CPU and MPS; "
                   "bfloat16/float16/float32 = bf16/fp16/fp32 (the spellings of ifas-eval). A resume may change it.")
@click.option("--load-in-8bit", is_flag=True, help="Load the captioners in 8 bits (bitsandbytes).")
@click.option("--device", default="auto", show_default=True,
              help="auto (cuda:LOCAL_RANK when a CUDA GPU is available, else Apple MPS on an Apple silicon Mac, "
                   "else cpu: ifas-eval's auto, one GPU per process under torchrun), cpu, cuda, cuda:N or mps. "
                   "MPS is supported by reading, untested on a Mac.")
@click.option("--epochs", type=click.IntRange(1), default=5, show_default=True, help="C_S fine-tuning epochs.")
@click.option("--lr", type=float, default=1e-5, show_default=True, help="C_S fine-tuning learning rate.")
@click.option("--ft-batch-size", type=click.IntRange(1), default=16, show_default=True,
              help="C_S fine-tuning batch size (per process); for captioning see --batch-size.")
@click.option("--warmup-steps", type=click.IntRange(0), default=1000, show_default=True,
              help="Linear warm-up steps (capped at 10% of all steps).")
@click.option("--lora-r", "--lora-rank", "lora_r", type=click.IntRange(0), default=0, show_default=True,
              help="0 = LLM frozen; > 0 = LoRA of this rank on the LLM (peft), merged on save.")
@click.option("--checkpoint-every", type=click.IntRange(1), default=200, show_default=True,
              help="C_S fine-tuning: optimizer steps between resumable checkpoints.")
@click.option("--finetune-splits", default="train", show_default=True,
              help="Comma-separated splits whose fakes may enter D_S (all splits if none of them exists).")
@click.option("--finetune-exclude-sources", default=None,
              help="Comma-separated `source` values whose fakes are left out of D_S, so C_S is not fine-tuned "
                   "on them (e.g. the held-out target: MSU-MFSD). Recorded; a resume must keep it.")
@click.option("--shard-size", type=click.IntRange(1), default=1000, show_default=True,
              help="Caption rows per parquet shard, written as they are produced (a killed run resumes from them).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="C_S fine-tuning seed (data order and dropout).")
@click.option("--push-to-hub", default=None, help="Hub dataset repo to upload the corpus to.")
@click.option("--push-captioner-to-hub", default=None, help="Hub model repo to upload C_S to.")
@click.option("--if-empty", type=click.Choice(["error", "general"]), default="error", show_default=True,
              help="When no fake's general caption has a keyword of its attack type (empty D_S): stop, or "
                   "'general': train no C_S and keep the fakes' general captions (the tiny random captioner).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@verbose_option
def caption_command(out: str, split: str, stage: str | None, dataset: str | None, splits: str | None, preset: str,
                    captioner: str | None, keywords_file: str | None, interpretation: str, prompt: str,
                    max_new_tokens: int, min_new_tokens: int, num_beams: int, batch_size: int | None, dtype: str,
                    load_in_8bit: bool, device: str | None, epochs: int, lr: float, ft_batch_size: int,
                    warmup_steps: int, lora_r: int, checkpoint_every: int, finetune_splits: str,
                    finetune_exclude_sources: str | None, shard_size: int,
                    seed: int, push_to_hub: str | None, push_captioner_to_hub: str | None, if_empty: str,
                    no_progress: bool) -> None:
    """Spoof-aware Captioning and Filtering (Algorithm 1): caption, filter, fine-tune C_S, write the VQA corpus.

    Resumable: rerun the same command after a crash. Several processes share the work under torchrun or
    accelerate launch. See docs/captioning.md.
    """
    from pathlib import Path

    from scf.captioning.captioner import CaptionerError, DecodingConfig, default_batch_size, resolve_source
    from scf.captioning.finetune import FinetuneConfig
    from scf.captioning.keywords import KeywordError
    from scf.captioning.pipeline import CaptionPipeline, CaptionRunConfig, PipelineError
    from scf.schema import SchemaError

    def _csv(text: str | None) -> tuple[str, ...] | None:
        return tuple(s.strip() for s in text.split(",") if s.strip()) if text else None

    if device == "auto":
        device = None  # pick_device's automatic choice, as when --device is left out
    try:
        batch_size = batch_size or default_batch_size(device)
        decoding = DecodingConfig(prompt=prompt, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                                  num_beams=num_beams)
        ft = FinetuneConfig(learning_rate=lr, epochs=epochs, batch_size=ft_batch_size, warmup_steps=warmup_steps,
                            lora_r=lora_r, checkpoint_every=checkpoint_every, seed=seed)
        config = CaptionRunConfig(
            out=Path(out), dataset=dataset, captioner=resolve_source(preset, captioner), split=split, stage=stage,
            keywords_file=keywords_file, decoding=decoding, finetune=ft, batch_size=batch_size, dtype=dtype,
            load_in_8bit=load_in_8bit, device=device, interpretation=interpretation, shard_size=shard_size,
            dataset_splits=_csv(splits), finetune_splits=_csv(finetune_splits) or ("train",),
            finetune_exclude_sources=_csv(finetune_exclude_sources) or (),
            push_to_hub=push_to_hub, push_captioner_to_hub=push_captioner_to_hub, show_progress=not no_progress,
            if_empty=if_empty)
        CaptionPipeline(config).run()
    except (CaptionerError, KeywordError, PipelineError, SchemaError) as e:
        # already one line that says what failed and where, e.g. load_table's "cannot write the datasets cache
        # copy of ... set HF_DATASETS_CACHE": checked before the full-disk classifier below, which would follow
        # the cause (a nameless ENOSPC in the cache) and blame --out (review26 M2)
        raise click.ClickException(str(e)) from e
    except Exception as e:  # noqa: BLE001 - a full disk (safetensors raises SafetensorError, not OSError)
        full = _caption_write_error(e, Path(out))
        if full:
            raise click.ClickException(full) from e
        if isinstance(e, (OSError, ValueError)):
            raise click.ClickException(str(e)) from e  # OSError: files, Hub
        raise


def _caption_write_error(error: BaseException, out: Path) -> str | None:
    """The one line of ``scf caption`` for an output that could not be written (`scf.shards.write_error_message`):
    a full disk or quota anywhere (the message names the file when the error does, else ``--out``), or a refused
    permission or I/O error on a file under ``--out``. None otherwise (reading the dataset, the network)."""
    import os

    from scf.shards import NO_ROOM_ERRNOS, os_error_of, write_error_message

    e = os_error_of(error)
    if e is None:
        return None
    named = Path(os.fsdecode(e.filename)) if e.filename else None
    inside = named is not None and os.path.abspath(named).startswith(os.path.abspath(out) + os.sep)
    if e.errno not in NO_ROOM_ERRNOS and not inside:
        return None
    where = out if named is None or inside else named.parent
    return write_error_message(e, where, kept="the captions finished so far (and C_S's checkpoints) are kept",
                               rerun="rerun the same command to resume (nothing finished is redone)")
