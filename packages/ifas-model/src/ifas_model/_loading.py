"""Clear errors when a checkpoint or a pretrained part cannot be loaded (path, Hub, custom code, pickled weights)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def looks_like_local_path(name: str | os.PathLike) -> bool:
    """Whether ``name`` is meant as a local path rather than a Hub id.

    A path object, an absolute path, one starting with ``./``, ``../`` or ``~``, one with two or more ``/``
    (a Hub id has at most one), or ``a/b`` whose parent folder ``a`` exists. A bare name (``gpt2``) or
    ``org/name`` without a local ``org`` folder is a Hub id.
    """
    if isinstance(name, os.PathLike):
        return True
    text = str(name)
    if text.startswith(("./", "../", "~", ".\\", "..\\")) or os.path.isabs(text) or text in (".", ".."):
        return True
    parts = text.replace("\\", "/").split("/")
    if len(parts) > 2:
        return True
    return len(parts) == 2 and bool(parts[0]) and Path(parts[0]).is_dir()


def check_local(name: str | os.PathLike, what: str) -> None:
    """Raise ``FileNotFoundError("<what> not found: PATH")`` when ``name`` looks local and does not exist.

    Without this, transformers reports a missing folder as a malformed Hub repository id.
    """
    if looks_like_local_path(name) and not Path(os.path.expanduser(str(name))).exists():
        raise FileNotFoundError(f"{what} not found: {name}")


def one_line(err: BaseException) -> str:
    """An exception's message on one line (Hugging Face messages span several)."""
    return " ".join(str(err).split()) or type(err).__name__


@contextlib.contextmanager
def loading(what: str, name: str | os.PathLike) -> Iterator[None]:
    """Name the part and the id in any failure to load it: ``vision model 'openai/clip-vit-large-patch14': ...``.

    A ``FileNotFoundError`` from `check_local`, a `RemoteCodeRefused` and a `SafetensorsRequired` pass unchanged;
    transformers' refusal of a model that needs ``trust_remote_code`` becomes a `RemoteCodeRefused` (its own
    message would advise passing ``trust_remote_code=True``); any other failure becomes an ``OSError`` (what
    transformers raises for an unreachable or missing repository), chained to the original.
    """
    try:
        yield
    except (RemoteCodeRefused, SafetensorsRequired):
        raise  # already one line naming the part
    except FileNotFoundError as err:
        if str(err).startswith(("checkpoint folder not found", f"{what} folder not found")):
            raise
        raise OSError(f"{what} {str(name)!r}: {one_line(err)}") from err
    except Exception as err:  # noqa: BLE001 - re-raised with the part named, the original chained
        logger.debug("loading %s %s failed", what, name, exc_info=True)
        if asks_for_remote_code(err):  # transformers' message would say "pass trust_remote_code=True": never
            raise RemoteCodeRefused(f"{what} {str(name)!r}: asks for Python code of its own (an auto_map); "
                                    f"{NEVER_RUN}") from err
        raise OSError(f"{what} {str(name)!r}: {one_line(err)}") from err


# --- code and pickles shipped with a model: never run, never unpickled ------------------------------------------

REMOTE_CODE_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")
"""The usual files whose ``auto_map`` entry names Python classes that transformers would import from the model's
folder. Every top-level ``*.json`` file is checked (``generation_config.json``, ``video_preprocessor_config.json``
... can carry one too); these come first, so their name is the one reported."""
AUTO_MAP_SCAN_LIMIT = 64 * 2**20
"""JSON files larger than this (a big ``tokenizer.json``) are not parsed for an ``auto_map``."""
NEVER_RUN = "Python code shipped with a model is never run by this toolkit"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


class RemoteCodeRefused(OSError, ValueError):
    """A model folder or Hub repository asks for its own Python code to be run (an ``auto_map``, ``*.py`` files).

    Both an ``OSError`` (what a failed load raises, see `loading`) and a ``ValueError`` (a bad input), so callers
    that catch either turn it into their one-line error.
    """


class SafetensorsRequired(OSError, ValueError):
    """A local model folder has no safetensors weights (only a ``pytorch_model.bin`` pickle, which is never loaded,
    or none at all)."""


class WeightsUnreadable(OSError, ValueError):
    """A local model folder's safetensors weights are cut short or damaged (a full disk while writing, a partial
    copy or download). Both an ``OSError`` and a ``ValueError``, so callers catching either make it one line."""


WEIGHTS_HINT = ("a full disk while it was written, or a partial copy? Copy the folder again; a final/ of an ifas-train "
                "run is written again by rerunning the same ifas-train command (nothing is trained again)")


def check_local_weights(name: str | os.PathLike, what: str) -> None:
    """Read the header of every ``model*.safetensors`` file of a local folder; a file cut short names itself.

    Cheap (only the header is read; safetensors checks that its tensors fit the file), and done before
    ``from_pretrained`` loads anything, whose own error would be a traceback from safetensors
    (``SafetensorError: Error while deserializing header: incomplete metadata, file not fully covered``),
    neither an ``OSError`` nor a ``ValueError`` and naming no file. A Hub id (no local folder) is skipped.

    Raises:
        WeightsUnreadable: ``<what> FILE: cut short or damaged (DETAIL); <hint>``.
    """
    from safetensors import safe_open

    folder = _local_dir(name)
    if folder is None:
        return
    for file in sorted(folder.glob("model*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as err:  # noqa: BLE001 - SafetensorError is neither OSError nor ValueError
            if is_lfs_pointer(file):
                raise WeightsUnreadable(f"{what} {file}: a Git LFS pointer, not the weights (a clone without "
                                        "git-lfs); run `git lfs pull` in that repository, or download it with "
                                        "`hf download`") from err
            raise WeightsUnreadable(f"{what} {file}: cut short or damaged ({one_line(err)}); {WEIGHTS_HINT}") from err


def is_lfs_pointer(file: str | os.PathLike) -> bool:
    """A small text file in place of a large one: what ``git clone`` of a Hub repository leaves without git-lfs."""
    try:
        with open(file, "rb") as f:
            return f.read(64).startswith(b"version https://git-lfs.github.com/spec/")
    except OSError:
        return False


def _local_dir(name: str | os.PathLike) -> Path | None:
    """The folder ``name`` names on this machine (as transformers decides: an existing directory), else None."""
    path = Path(os.path.expanduser(str(name)))
    return path if path.is_dir() else None


def refuse_remote_code(name: str | os.PathLike, what: str) -> None:
    """Refuse a local model folder that ships Python code for transformers to import.

    transformers imports the classes named by an ``auto_map`` entry (in `REMOTE_CODE_FILES`) from ``*.py``
    files of the folder when ``trust_remote_code`` is set, and, for a model type it does not know (I-FAS's
    ``"ifas"``), it even asks "Do you wish to run the custom code? [y/N]" on stdin. Nothing in I-FAS needs such
    code: every class is in ``ifas_model`` or transformers. So a folder with an ``auto_map`` or with ``*.py``
    files is refused before anything is read, and every loader also passes ``trust_remote_code=False``. A Hub id
    is not checked here (its files are not on disk yet): its refusal comes from `loading`.

    Args:
        name: the folder (a Hub id is skipped).
        what: what it is, for the message (``checkpoint``, ``vision model``, ``language model``, ``tokenizer``).

    Raises:
        RemoteCodeRefused: one line naming the folder and the file.
    """
    import json

    folder = _local_dir(name)
    if folder is None:
        return
    others = sorted(p.name for p in folder.glob("*.json") if p.name not in REMOTE_CODE_FILES)
    for file_name in (*REMOTE_CODE_FILES, *others):
        file = folder / file_name
        if not file.is_file() or file.stat().st_size > AUTO_MAP_SCAN_LIMIT:
            continue
        try:
            content = json.loads(file.read_text())
        except (ValueError, OSError):
            continue  # not JSON: the loader names it; a file it cannot read cannot ask for code either
        if isinstance(content, dict) and "auto_map" in content:
            raise RemoteCodeRefused(
                f"{what} {str(name)!r}: {file_name} has an auto_map (Python classes of its own to import); "
                f"{NEVER_RUN}: delete the auto_map entry, or use a folder written by save_pretrained without "
                "custom code")
    code = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # .git, .cache of a cloned or downloaded repository
        code += [str((Path(parent) / f).relative_to(folder)) for f in files if f.endswith(".py")]
    code.sort()
    if code:
        shown = ", ".join(code[:3]) + (f" and {len(code) - 3} more" if len(code) > 3 else "")
        raise RemoteCodeRefused(f"{what} {str(name)!r}: the folder ships Python code ({shown}); {NEVER_RUN}: "
                                "remove the .py files, or use a folder written by save_pretrained without custom "
                                "code")


def no_remote_code(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` for a transformers ``from_pretrained`` with ``trust_remote_code=False`` set explicitly.

    Raises:
        ValueError: the caller passed ``trust_remote_code=True`` (never allowed, see `refuse_remote_code`).
    """
    if kwargs.get("trust_remote_code"):
        raise ValueError(f"trust_remote_code=True is not accepted: {NEVER_RUN}")
    return {**kwargs, "trust_remote_code": False}


def asks_for_remote_code(err: BaseException) -> bool:
    """Whether ``err`` is transformers refusing a model that needs ``trust_remote_code`` (its auto_map)."""
    text = str(err)
    return "trust_remote_code" in text or "contains custom code" in text


def require_local_safetensors(name: str | os.PathLike, what: str, loader: str) -> bool:
    """For a local folder, require its weights as safetensors; return whether ``name`` is a local folder.

    A folder whose weights are only ``pytorch_model.bin`` (a pickle) is refused with how to convert it once;
    the caller then loads the folder with ``use_safetensors=True``. A Hub id returns False and is left to
    transformers (see docs/model.md: it prefers the repository's safetensors, else loads the ``.bin`` with
    torch's ``weights_only`` unpickler, which torch >= 2.6 makes safe against code execution).

    Args:
        name: the folder or Hub id.
        what: what it is, for the message (``vision model``, ``language model``).
        loader: the class that loads it, for the conversion hint (``CLIPVisionModel``, ``AutoModelForCausalLM``).

    Raises:
        SafetensorsRequired: the folder has ``pytorch_model.bin`` (or its index) and no safetensors weights.
    """
    folder = _local_dir(name)
    if folder is None:
        return False
    if any((folder / f).is_file() for f in SAFE_WEIGHTS) or any(folder.glob("*.safetensors")):
        return True
    pickles = [f for f in PICKLE_WEIGHTS if (folder / f).is_file()]
    if pickles:
        raise SafetensorsRequired(
            f"{what} {str(name)!r}: weights only as a pickle ({', '.join(pickles)}), and pickled weights are never "
            "loaded (unpickling can run code); convert them once, where you trust the file: "
            f"{loader}.from_pretrained(FOLDER, use_safetensors=False).save_pretrained(FOLDER, "
            "safe_serialization=True)")
    raise SafetensorsRequired(f"{what} {str(name)!r}: no model.safetensors in the folder (the weights are missing; "
                               "save_pretrained writes them)")


def note_hub_weights(repo_id: str | os.PathLike, what: str) -> str | None:
    """After loading a Hub part, say which weights file transformers took when it was a pickle; return its name.

    transformers loads a Hub repository's ``model.safetensors`` (or sharded safetensors) when it has them and
    otherwise its ``pytorch_model.bin`` with torch's ``weights_only`` unpickler (refused on torch < 2.6). The
    second case is logged as a warning naming the part, so that a run never unpickles without a word. The
    answer is read from the local Hub cache (no network); None when it cannot tell or the weights were
    safetensors.
    """
    try:
        from huggingface_hub import try_to_load_from_cache

        def cached(name: str) -> bool:
            return isinstance(try_to_load_from_cache(str(repo_id), name), str)

        if any(cached(name) for name in SAFE_WEIGHTS):
            return None
        pickle = next((name for name in PICKLE_WEIGHTS if cached(name)), None)
    except Exception:  # noqa: BLE001 - a note only: an unexpected cache layout must not stop the load
        logger.debug("could not tell which weights file %s used", repo_id, exc_info=True)
        return None
    if pickle is not None:
        logger.warning("%s %r: the Hub repository has no safetensors weights; its %s (a pickle) was loaded with "
                       "torch's weights_only unpickler, which cannot run code (torch >= 2.6)", what, str(repo_id),
                       pickle)
    return pickle
