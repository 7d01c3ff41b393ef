"""Clear errors when a checkpoint or a pretrained part cannot be loaded (path not found, Hub failure)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

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

    A ``FileNotFoundError`` from `check_local` passes unchanged; any other failure becomes an ``OSError`` (what
    transformers raises for an unreachable or missing repository), chained to the original.
    """
    try:
        yield
    except FileNotFoundError as err:
        if str(err).startswith(("checkpoint folder not found", f"{what} folder not found")):
            raise
        raise OSError(f"{what} {str(name)!r}: {one_line(err)}") from err
    except Exception as err:  # noqa: BLE001 - re-raised with the part named, the original chained
        logger.debug("loading %s %s failed", what, name, exc_info=True)
        raise OSError(f"{what} {str(name)!r}: {one_line(err)}") from err
