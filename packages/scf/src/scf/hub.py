"""Hub uploads without the user's local paths: a staged copy of a folder whose text files are redacted."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOCAL = "<local>"
"""What replaces the folders above a local path in an uploaded file: ``/home/ana/data/oulu`` -> ``<local>/oulu``."""
TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".yaml", ".yml", ".txt", ".csv")
"""Files redacted in the staged copy (the records, cards and logs scf writes); every other file is linked as is."""
STAGE_SUFFIX = ".hub-upload"
"""The staged copy of ``FOLDER`` is ``FOLDER.hub-upload`` beside it (removed after a successful upload)."""


def path_replacements(paths: Iterable[str | Path | None]) -> list[tuple[str, str]]:
    """The local paths to hide, each with what replaces it: ``(path, "<local>/<its name>")``.

    Each path is taken as given (if absolute), made absolute, and resolved (symbolic links), so every spelling
    that a record may hold is found. The user's home folder comes last, as ``~`` (a path the list missed, e.g.
    a ``--captioner`` folder, then still names no user). Longest first, so a file inside a listed folder keeps
    its own name.

    Args:
        paths: local files or folders (None and Hub ids that are not local paths are skipped).

    Returns:
        ``[(old, new), ...]`` for `redact_text`.
    """
    found: dict[str, str] = {}
    for p in paths:
        if p is None or str(p) == "":
            continue
        path = Path(p).expanduser()
        if not path.is_absolute() and not path.exists():
            continue  # a Hub id (org/name) or a path that names nothing here
        for spelling in {str(path) if path.is_absolute() else None, str(path.absolute()), str(path.resolve())}:
            if spelling and spelling not in ("/", ""):
                found[spelling] = f"{LOCAL}/{path.resolve().name or path.name}"
    ordered = sorted(found.items(), key=lambda kv: -len(kv[0]))
    home = str(Path.home())
    if home not in ("/", ""):
        ordered.append((home, "~"))
    return ordered


def redact_text(text: str, replacements: Sequence[tuple[str, str]]) -> str:
    """``text`` with every listed path replaced (also as escaped inside a JSON string), in one pass (a
    replacement is never replaced again), where it stands as a whole path or starts a longer one: ``/data/x``
    in ``/data/x/a.png``, not in ``/data/x2`` nor in ``/mnt/data/x``."""
    mapping: dict[str, str] = {}
    for old, new in replacements:
        mapping.setdefault(old, new)
        mapping.setdefault(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
    if not mapping:
        return text
    keys = sorted(mapping, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w./~-])(?:" + "|".join(map(re.escape, keys)) + r")(?![\w.-])")
    return pattern.sub(lambda m: mapping[m.group(0)], text)


def _is_temporary(name: str) -> bool:
    return name.endswith(".tmp")


def stage_redacted(folder: Path, replacements: Sequence[tuple[str, str]]) -> Path:
    """Write ``FOLDER.hub-upload``: the text files of ``folder`` redacted (`redact_text`), every other file
    hard-linked (copied where a link is impossible), temporaries (``*.tmp``) left out. Returns the copy."""
    folder = Path(folder)
    stage = staged_folder(folder)
    shutil.rmtree(stage, ignore_errors=True)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _is_temporary(d))
        here = Path(dirpath)
        target_dir = stage / here.relative_to(folder)
        target_dir.mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            if _is_temporary(name):
                continue
            src, dst = here / name, target_dir / name
            if src.suffix.lower() in TEXT_SUFFIXES:
                text = src.read_text(encoding="utf-8", errors="surrogateescape")
                dst.write_text(redact_text(text, replacements), encoding="utf-8", errors="surrogateescape")
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    return stage


def upload_redacted(api: Any, folder: str | Path, *, repo_id: str, repo_type: str, private: bool,  # noqa: ANN401
                    commit_message: str, paths: Iterable[str | Path | None]) -> str:
    """Create the repository (``exist_ok``) and ``api.upload_folder`` a copy of ``folder`` in which the given local
    paths (and the home folder) read ``<local>/<name>`` (and ``~``) in every text file: records, cards, skip logs.

    The local files keep their paths (a resume reads them). The copy (``FOLDER.hub-upload``, `staged_folder`) is
    written before the Hub is contacted and removed once the upload succeeded; after a failure it is kept, so
    that ``hf upload`` of it uploads no local path either.

    Args:
        api: a ``huggingface_hub.HfApi``.
        folder: the folder to upload.
        repo_id: the Hub repository.
        repo_type: ``dataset`` or ``model``.
        private: create the repository private (an existing one keeps its visibility).
        commit_message: the commit message.
        paths: the local paths to hide (see `path_replacements`).

    Returns:
        The repository URL, as ``create_repo`` gives it.
    """
    folder = Path(folder)
    stage = stage_redacted(folder, path_replacements(paths))
    url = api.create_repo(repo_id, repo_type=repo_type, exist_ok=True, private=private)
    logger.info("uploading %s (a copy of %s without local paths) to %s", stage, folder, repo_id)
    api.upload_folder(folder_path=str(stage), repo_id=repo_id, repo_type=repo_type, commit_message=commit_message)
    shutil.rmtree(stage, ignore_errors=True)
    return str(url)


def staged_folder(folder: str | Path) -> Path:
    """Where `upload_redacted` stages the copy of ``folder`` (kept after a failed upload): ``FOLDER.hub-upload``."""
    folder = Path(folder)
    if not folder.name or folder.name == "..":  # "." or "..": name it by the folder it is
        folder = folder.resolve()
    return folder.with_name(folder.name + STAGE_SUFFIX)
