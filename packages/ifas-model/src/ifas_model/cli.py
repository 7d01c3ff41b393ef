"""The `ifas-train` command line: train I-FAS with the Lopsided LM loss on an SCF VQA corpus.

Heavy libraries are imported inside the command so that ``ifas-train --help`` is fast. Several processes:
``torchrun --nproc_per_node N $(which ifas-train) ...``.
"""

from __future__ import annotations

import logging
from typing import Any

import click

_CHOICE_LLM = click.Choice(["full", "lora", "qlora", "frozen"])


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="ifas-model", prog_name="ifas-train", message="%(prog)s (%(package)s) %(version)s")
@click.option("--dataset", help="Hub id (org/name) or local path of the scf VQA corpus.")
@click.option("--output", "--out", "-o", "output_dir", help="Run folder (config, metrics, checkpoints, final/); "
              "--out is the same option, as in scf and ifas-eval. [default: runs/ifas]")
@click.option("--preset", type=click.Choice(["default", "tiny"]),  # training.config.TRAIN_PRESETS (tested)
              help="Model and recipe preset: default (CLIP ViT-L/14 + OPT-2.7B) or tiny (random, offline). "
                   "[default: default]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML file of settings (TrainConfig field names); explicit flags override it.")
@click.option("--llm", type=_CHOICE_LLM, help="How the LLM trains (the vision encoder is always frozen): full is the "
              "paper's recipe (estimated, not measured, to fit one 80 GB GPU at batch 32); lora/qlora train at lr 1e-4 unless --lr is given. "
              "[default: full]")
@click.option("--loss", type=click.Choice(["lopsided", "plain"]), help="Lopsided LM loss or the plain LM loss. [default: lopsided]")
@click.option("--alpha", type=float, help="Judgment weight of the Lopsided LM loss. [default: 0.7]")
@click.option("--answers", type=click.Choice(["full", "judgment-only", "general-captions"]),
              help="Answers trained on: full, judgment-only (no SCF), general-captions (T_F for fakes). "
                   "[default: full]")
@click.option("--no-gac", "no_gac", is_flag=True, default=None, help="Ablation: no global features in the GAC.")
@click.option("--lr", "learning_rate", type=float, help="Peak learning rate. [default: 1e-5 (paper); 1e-4 with --llm lora/qlora]")
@click.option("--weight-decay", type=float, help="AdamW weight decay. [default: 1e-2]")
@click.option("--batch-size", type=int, help="Samples per device per micro-batch. [default: 32]")
@click.option("--grad-accum", type=int, help="Micro-batches per optimizer step. [default: 1]")
@click.option("--global-batch-size", type=int,
              help="Samples per optimizer step over all GPUs (e.g. the paper's 32 under torchrun on 8 GPUs): "
                   "sets the per-device micro-batch (at most --batch-size) and --grad-accum.")
@click.option("--epochs", type=int, help="Passes over the training split. [default: 10]")
@click.option("--max-steps", type=int, help="Optimizer steps (overrides --epochs).")
@click.option("--schedule", type=click.Choice(["cosine", "constant"]), help="LR after warm-up. [default: cosine]")
@click.option("--warmup-ratio", type=float, help="Share of steps in linear warm-up. [default: 0.03]")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]),
              help="auto = bf16 autocast on CUDA, fp32 on CPU. [default: auto]")
@click.option("--gradient-checkpointing", is_flag=True, default=None, help="Recompute activations (less memory).")
@click.option("--seed", type=int, help="Seed of model init, data order and dropout: bit-identical reruns on the "
              "CPU; on a GPU the last bits may differ between runs unless --deterministic. [default: 0]")
@click.option("--deterministic", is_flag=True, default=None,
              help="Deterministic GPU kernels (torch.use_deterministic_algorithms, warn-only): slower.")
@click.option("--sources", help="Comma-separated sources to train (and evaluate) on, as a protocol setting "
              "names them (ifas-eval --list-protocols); NAME:SPLIT+SPLIT keeps only those splits of a source "
              "(e.g. 'CelebA-Spoof:train,OULU-NPU'). [default: every source]")
@click.option("--train-split", help="Split(s) to train on, comma-separated (train,test for FLIP's MCIO lists). "
              "[default: train]")
@click.option("--eval-split", help="Evaluation split; default dev, else test, else 'holdout'; 'none' disables.")
@click.option("--eval-every", type=int, help="Evaluate every N steps (0: only at the end). [default: 500]")
@click.option("--save-every", type=int, help="Checkpoint every N steps (0: only at the end). [default: 500]")
@click.option("--log-every", type=int, help="Metrics line every N steps. [default: 10]")
@click.option("--keep-checkpoints", type=int, help="Newest checkpoints kept. [default: 2]")
@click.option("--num-workers", type=int, help="DataLoader workers decoding images. [default: 2]")
@click.option("--max-train-samples", type=int, help="Train on the first N rows only (debugging).")
@click.option("--max-eval-samples", type=int, help="Evaluate on at most N rows: a larger evaluation split is "
              "sampled (seeded, stratified by source and label). [default: 2000]")
@click.option("--vision-model", help="Vision encoder id or path replacing the default preset's.")
@click.option("--language-model", help="LLM id or path replacing the default preset's.")
@click.option("--lora-rank", type=int, help="LoRA rank for --llm lora/qlora. [default: 16]")
@click.option("--resume/--no-resume", "resume", default=None,
              help="--resume: require a checkpoint to continue from; --no-resume: refuse a folder that has "
              "one. Default: resume automatically when the run folder has checkpoints.")
@click.option("--push-to-hub", help="Upload final/ with its model card to this Hub repository (org/name).")
@click.option("--public", is_flag=True, default=None, help="Create the Hub repository public (default private).")
@click.option("--dist-timeout-min", type=int, help="Several processes: minutes a rank waits at a barrier while "
              "rank 0 alone writes a checkpoint or final/ before the run is aborted (torch's NCCL default is 10). "
              "[default: 120]")
@click.option("--stop-after-steps", type=int, help="Stop cleanly with a checkpoint after this step (time-limited "
              "jobs); rerun the same command to continue.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(config_file: str | None, no_gac: bool | None, resume: bool | None, public: bool | None,
         stop_after_steps: int | None, verbose: bool, **flags: Any) -> None:
    """Train the I-FAS model with the Lopsided LM loss on an SCF VQA corpus.

    Settings resolve as: defaults (the paper's recipe) < --preset < --config FILE < explicit flags. The
    resolved settings, metrics.jsonl, checkpoints/ and final/ (loadable with from_pretrained) go to --output,
    which one run holds at a time (a second run on it is refused).

    Devices: a CUDA GPU when there is one (several under torchrun, NCCL), else the CPU (gloo for several
    processes). Apple MPS is not supported: on a Mac the run uses the CPU.
    """
    import os

    from rich.logging import RichHandler

    # Under torchrun every rank would print the same lines: ranks other than 0 log warnings and errors only
    # (everything with -v), each line prefixed with the rank.
    rank = int(os.environ.get("RANK") or 0)
    level = logging.DEBUG if verbose else (logging.INFO if rank == 0 else logging.WARNING)
    logging.basicConfig(level=level, format=f"[rank {rank}] %(message)s" if rank else "%(message)s",
                        handlers=[RichHandler(show_path=False)], force=True)
    # bitsandbytes (imported with peft) warns on every CPU start that an optional Hub kernel is missing
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    flags["gac"] = False if no_gac else None
    flags["resume"] = None if resume is None else ("must" if resume else "never")
    flags["hub_private"] = False if public else None
    try:
        from ifas_model.training.config import resolve_config

        config = resolve_config(flags, config_file)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    run(config, stop_after=stop_after_steps)


def run(config: Any, stop_after: int | None = None) -> dict[str, Any]:
    """Run training with a resolved `TrainConfig`, turning user errors into one-line `click.ClickException`s.

    The run folder is held for the whole run (`hold_run_folder`, rank 0) before anything is loaded or
    written in it: a second run on the same ``--output`` is refused in seconds, as is a folder that cannot be
    created or written, and on every rank."""
    import errno
    import gc
    import sys
    import traceback

    from ifas_model._loading import one_line
    from ifas_model.training.checkpoint import RunWriteError, write_failure
    from ifas_model.training.distributed import hold_run_folder, init_distributed, shutdown_distributed
    from ifas_model.training.trainer import NonFiniteLossError, PushError, ResumeError, Trainer
    from scf.locking import FolderInUse
    from scf.schema import SchemaError

    trainer = None
    try:
        with hold_run_folder(config.output_dir, init_distributed(config.dist_timeout_min)):
            trainer = Trainer(config)
            return trainer.fit(stop_after=stop_after)
    except (FolderInUse, SchemaError, ResumeError, NonFiniteLossError, PushError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    except Exception as err:
        logging.getLogger(__name__).debug("details", exc_info=True)
        disk = write_failure(err) if not isinstance(err, RunWriteError) else None
        if disk is not None and disk[0] == errno.EIO and not _under(err, config.output_dir):
            disk = None  # an I/O error reading a file outside the run (the base model's shards): not a write
        if disk is not None:  # a write the trainer does not name itself (a cache); safetensors' error is no OSError
            raise click.ClickException(disk_message(err, disk, config.output_dir)) from err
        if isinstance(err, (ValueError, OSError)):  # a missing model path, an unloadable corpus, a bad setting,
            raise click.ClickException(one_line(err)) from err  # a RunWriteError (a full disk, one line already)
        raise
    finally:
        # DDP's reducer holds the process group: while the trainer lives, destroy_process_group() cannot free it
        # and it is torn down at interpreter exit instead (once seen to abort a finished two-process gloo run with
        # "terminate called without an active exception"). Drop the trainer first, and on an error the frames of
        # the traceback that still hold it (the message has been taken; the details were logged).
        del trainer
        exc = sys.exc_info()[1]
        while exc is not None:
            traceback.clear_frames(exc.__traceback__)
            exc = exc.__cause__ or exc.__context__
        gc.collect()
        shutdown_distributed()


def _under(err: BaseException, run_dir: Any) -> bool:
    """Whether ``err`` names no file, or one inside ``run_dir`` (where the run writes)."""
    import os
    from pathlib import Path

    if not (isinstance(err, OSError) and err.filename):
        return True
    return Path(os.fsdecode(err.filename)).resolve().is_relative_to(Path(run_dir).resolve())


def disk_message(err: BaseException, disk: tuple[int, str], run_dir: Any) -> str:
    """One line for a write that failed for want of space or a working disk outside the trainer's own named writes
    (`ifas_model.training.checkpoint.writing` names those): the file when the error names one, else the run folder
    (or a cache folder the run uses), what is kept, and that rerunning the same command resumes."""
    from ifas_model.training.checkpoint import failure_target_and_remedy, latest_checkpoint

    code, reason = disk
    named, remedy = failure_target_and_remedy(err, code, f"to {run_dir} (or a cache folder the run uses)")
    latest = latest_checkpoint(run_dir)
    kept = f"the finished checkpoints are kept (newest: {latest})" if latest else "no checkpoint was finished yet"
    return f"cannot write {named} ({reason}): {kept}: {remedy} and rerun the same command to resume"


if __name__ == "__main__":  # ``python -m ifas_model.cli`` (also what torchrun can launch)
    main()
