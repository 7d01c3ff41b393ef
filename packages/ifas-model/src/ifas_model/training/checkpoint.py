"""Resumable checkpoints of the trainer, written with safetensors and JSON only (nothing is pickled).

A checkpoint is a folder ``<run>/checkpoints/step-NNNNNNNN/`` holding

* ``model.safetensors``: the *trainable* parameters (frozen ones are rebuilt from the preset and seed, or the
  pretrained weights, so a full fine-tune stores the LLM while a LoRA run stores only its adapters);
* ``optimizer.safetensors`` + ``optimizer.json``: the optimizer's per-parameter tensors (AdamW moments and
  step counts) and everything else of its ``state_dict`` (param groups, hyper-parameters) as JSON;
* ``rng-rank<R>.safetensors`` + ``rng-rank<R>.json``: torch CPU/CUDA, numpy and Python RNG states per rank;
* ``trainer_state.json``: step, epoch, next micro-batch, counters and the scheduler's ``state_dict``.

It is written under a temporary name and renamed when complete, so a kill while saving leaves the previous
checkpoint as the latest. Because optimizer state is split into tensors + JSON, resuming never unpickles
anything (``torch.load`` is not used at all).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scf.tensortree import join_tree, rng_state, save_tree, set_rng_state

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d{8})$")


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """The folder of the checkpoint at optimizer step ``step``."""
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders of interrupted saves are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a small state file under a temporary name and rename it into place, so a kill never tears it.

    A failed write (a full disk) removes the temporary file and leaves the old file as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- a full disk, a quota, a read-only or failing disk: one line naming what could not be written --------------

SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""Write errors that freeing space (or raising the quota) cures."""
WRITE_ERRNOS = SPACE_ERRNOS | {errno.EROFS, errno.EIO}
"""Errors of a write that mean the disk, not the data, is the problem (`write_failure` recognises them)."""
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


class RunWriteError(OSError):
    """A file or folder of the run could not be written (a full disk, a quota, a read-only or failing disk).

    The message is one line naming it, what is kept and that rerunning the same command resumes; ``reason_errno``
    is the ``errno`` of the failure."""

    def __init__(self, message: str, reason_errno: int | None = None) -> None:
        super().__init__(message)
        self.reason_errno = reason_errno


def write_failure(err: BaseException) -> tuple[int, str] | None:
    """``(errno, reason)`` when ``err`` is a write failing for want of space or a working disk, else None.

    Covers an ``OSError`` whose errno is in `WRITE_ERRNOS` and safetensors' ``SafetensorError`` ("Error while
    serializing: I/O error: No space left on device (os error 28)"), which is not an ``OSError``."""
    if isinstance(err, OSError):
        code = err.errno
    elif type(err).__name__ == "SafetensorError" and "serializ" in str(err):
        found = _OS_ERROR.search(str(err))
        code = int(found.group(1)) if found else None
    else:
        return None
    if code not in WRITE_ERRNOS:
        return None
    return code, os.strerror(code)


def human_size(n_bytes: float) -> str:
    """``1.5 GB``, ``940 KB``: a size in powers of 1000, for messages."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit in ("bytes", "KB") else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def failure_target_and_remedy(err: BaseException, code: int, target: str | Path) -> tuple[str, str]:
    """What a failed write names and what to do: the file of ``err`` when it is an ``OSError`` naming one (Python's
    and safetensors' write errors name none), else ``target``; "free space" for an errno in `SPACE_ERRNOS`, else
    "make the disk writable again"."""
    named = os.fsdecode(err.filename) if isinstance(err, OSError) and err.filename else str(target)
    return named, "free space" if code in SPACE_ERRNOS else "make the disk writable again"


@contextlib.contextmanager
def writing(target: str | Path, advice: str) -> Iterator[None]:
    """Turn a write failing for want of space or a working disk into a `RunWriteError`, one line.

    The message is ``cannot write TARGET (REASON): ADVICE``, with the file of the ``OSError`` instead of
    ``TARGET`` when it names one (Python's and safetensors' write errors name none). Other errors pass unchanged.

    Args:
        target: the file or folder being written (the temporary folder of a checkpoint or of ``final/``).
        advice: what is kept and what to do, e.g. "the finished checkpoints are kept ...: free space and rerun".
    """
    try:
        yield
    except RunWriteError:
        raise
    except Exception as err:
        found = write_failure(err)
        if found is None:
            raise
        code, reason = found
        named, remedy = failure_target_and_remedy(err, code, target)
        logger.debug("writing %s failed", named, exc_info=True)
        raise RunWriteError(f"cannot write {named} ({reason}): {advice.format(remedy=remedy)}", code) from err


def fsync_files(folder: str | Path) -> None:
    """``fsync`` every file of ``folder`` (not recursive), so that a write error only reported when the data
    reaches the disk (a quota on NFS, a failing disk) is raised here, before the folder is renamed into place."""
    for file in sorted(Path(folder).iterdir()):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def replace_dir(tmp: str | Path, final: str | Path) -> None:
    """Rename the complete folder ``tmp`` to ``final``, replacing an existing ``final`` (moved aside to
    ``final.old`` first, so a kill in between leaves a complete folder under one of the two names)."""
    tmp, final = Path(tmp), Path(final)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


class CheckpointError(ValueError):
    """A checkpoint or run-state file cannot be read (cut off by a crash, a full disk or a bad copy)."""


def read_json(path: str | Path, remedy: str) -> Any:
    """Parse a JSON state file; a torn or damaged one raises `CheckpointError` naming it and ``remedy``."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{path}: not valid JSON ({err}); {remedy}") from err


def checkpoint_problem(path: str | Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (a missing, truncated or damaged file), or None.

    Cheap: the JSON files are parsed and only the header of each safetensors file is read (a truncated file no
    longer covers the tensors its header lists). Every rank's RNG files are checked, so that all processes of a
    run make the same choice.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        state = json.loads((path / "trainer_state.json").read_text())
        world = int(state.get("world_size", 1)) if isinstance(state, dict) else 1
    except (ValueError, OSError) as err:
        return f"trainer_state.json: {err}"
    ranks = [f"rng-rank{r}" for r in range(max(world, 1))]
    for name in ["optimizer.json", *(f"{r}.json" for r in ranks)]:
        try:
            json.loads((path / name).read_text())
        except FileNotFoundError:
            return f"{name} is missing"
        except (ValueError, OSError) as err:
            return f"{name}: not valid JSON ({err})"
    for name in ["model.safetensors", "optimizer.safetensors", *(f"{r}.safetensors" for r in ranks)]:
        if not (path / name).is_file():
            return f"{name} is missing"
        try:
            with safe_open(str(path / name), framework="pt"):
                pass
        except Exception as err:  # noqa: BLE001 - SafetensorError is neither OSError nor ValueError
            return f"{name}: {err}"
    return None


def resumable_checkpoint(run_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint whose files are all readable, and the newer unreadable ones with their problem.

    ``ifas-train`` keeps ``--keep-checkpoints`` (2) checkpoints, so a checkpoint damaged after it was renamed
    into place (power loss, a full disk, a bad copy) leaves the previous one to resume from.
    """
    bad: list[tuple[Path, str]] = []
    for path in reversed(list_checkpoints(run_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, bad
        bad.append((path, problem))
    return None, bad


# --- tensors + JSON instead of pickle: the format of `scf.tensortree` (`save_tree` is its own) ----------

def load_tree(stem: Path) -> Any:
    """Load what `save_tree` wrote (safetensors + JSON; nothing is unpickled).

    Raises:
        CheckpointError: either file is damaged, or they do not belong together (named in the message).
    """
    tensor_file, json_file = stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")
    tensors = _load_tensors(tensor_file)
    remedy = f"delete {stem.parent} to resume from the previous checkpoint"
    tree = read_json(json_file, remedy)
    try:
        return join_tree(tree, tensors)
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{json_file}: does not match {tensor_file.name} ({err}); {remedy}") from err


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file``, with a damaged file named in a `CheckpointError`."""
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - SafetensorError is neither OSError nor ValueError
        raise CheckpointError(f"{file}: unreadable ({err}); delete {file.parent} to resume from the previous "
                              "checkpoint") from err


# --- whole checkpoints ---------------------------------------------------------------------------------

def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that require gradients, by name, on CPU."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(run_dir: str | Path, step: int, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, trainer_state: dict[str, Any], rank: int = 0, world_size: int = 1,
                    barrier: Any = None, keep: int = 2) -> Path:
    """Write a checkpoint atomically (rank 0 writes weights/optimizer, every rank its RNG state).

    Args:
        barrier: a callable synchronising the ranks (None in a single process).
        keep: how many of the newest checkpoints to keep; older ones are deleted by rank 0.

    Returns:
        The checkpoint folder.
    """
    from safetensors.torch import save_file

    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    try:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        if barrier:
            barrier()
        save_tree(rng_state(), tmp / f"rng-rank{rank}")
        if rank == 0:
            save_file(trainable_state_dict(model), str(tmp / "model.safetensors"))
            save_tree(optimizer.state_dict(), tmp / "optimizer")
        if barrier:
            barrier()
        if rank == 0:
            state = {**trainer_state, "step": step, "world_size": world_size, "scheduler": scheduler.state_dict()}
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
            fsync_files(tmp)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
    except BaseException:
        if rank == 0:  # a full disk: the partial folder would only hold the space a rerun needs
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if rank == 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("checkpoint saved: %s", final)
    if barrier:
        barrier()
    return final


def load_checkpoint(path: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """Restore model (trainable part), optimizer, scheduler and this rank's RNG; return the trainer state.

    Raises:
        ValueError: the checkpoint was written by a different number of processes (the data order and RNG
            streams would differ, so the resumption would not be exact), or its parameters do not match.
        CheckpointError: a file of the checkpoint cannot be read (named in the message).
    """
    import torch

    path = Path(path)
    state = read_json(path / "trainer_state.json", f"delete {path} to resume from the previous checkpoint")
    if state.get("world_size", 1) != world_size:
        raise ValueError(f"{path}: written by {state.get('world_size')} processes, resuming with {world_size}; "
                         "resume with the same number of processes")
    weights = _load_tensors(path / "model.safetensors")
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise ValueError(f"{path}: trainable parameters do not match the model (missing {missing[:3]}, "
                         f"unexpected {extra[:3]}); was it written with other --llm/--preset settings?")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device))
    optimizer.load_state_dict(load_tree(path / "optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    set_rng_state(load_tree(path / f"rng-rank{rank}"))
    return state
