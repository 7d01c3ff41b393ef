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

from scf.schema import STAGED_COPY_SUFFIX, is_hidden_from_loaders

logger = logging.getLogger(__name__)

LOCAL = "<local>"
"""What replaces the folders above a local path in an uploaded file: ``/home/ana/data/oulu`` -> ``<local>/oulu``."""
REDACTED_FILES = frozenset({
    "README.md", "ingest_config.json", "ingest_summary.json", "skipped.jsonl",  # scf ingest
    "scf_caption_config.json", "scf_finetune.json",  # scf caption: the corpus record, the C_S record
    "config.json", "generation_config.json", "processor_config.json", "preprocessor_config.json",  # model configs
})
"""The files redacted in the staged copy, by name: the toolkit's own records, cards and skip logs, and the model /
processor configs (which can record where a part was loaded from). Every other file, among them the tokenizer and
vocabulary files (``tokenizer.json``, ``tokenizer_config.json``, ``vocab.json``, ``merges.txt``, ``*.model``), is
uploaded byte for byte: a vocabulary entry that looks like a path is data."""
PATH_LOG_FILES = frozenset({"skipped.jsonl"})
"""Files that repeat paths found in the user's lists verbatim (a manifest row ``/mnt/nas/ana/x.jpg`` outside
``--root``): in these, every absolute path also reads ``<local>/<name>`` (`redact_absolute_paths`)."""
STAGE_SUFFIX = STAGED_COPY_SUFFIX
"""The staged copy of ``FOLDER`` is the hidden ``.FOLDER.hub-upload`` beside it (removed after a successful upload;
`scf.schema.load_table` and ``datasets`` skip dot-folders, so it is never read back as data)."""


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
    pattern = re.compile(_PATH_START + "(?:" + "|".join(map(re.escape, keys)) + ")" + _PATH_END)
    return pattern.sub(lambda m: mapping[m.group(0)], text)


# a path starts after a space, quote or "file://" (not inside a longer path or a URL: "/mnt/data/x", "https://")
_PATH_START = r"(?:(?<=file://)|(?<![\w./~:<>-]))"
# and ends at the end of a name: "/data/x" in "/data/x/a.png" and "/data/x." ending a sentence, not in "/data/x2",
# "/data/x.csv" or "/data/x-old"
_PATH_END = r"(?![\w-]|\.[\w.-])"
_SEGMENT = r"[^\s\"'<>]*[^\s\"'<>.,;:!?)\]]"  # a path's characters, not ending on punctuation
# an absolute path; a space followed by a word with a "/" continues it ("/mnt/lab nas/ana/x.jpg")
_ABSOLUTE = re.compile(_PATH_START + "/" + _SEGMENT + r"(?:\s+[^\s\"'<>/]*/" + _SEGMENT + ")*")


def redact_absolute_paths(text: str) -> str:
    """``text`` with every absolute path (also a ``file://`` URI's) read as ``<local>/<its last name>``: the
    generic rule for files that repeat the paths of a user's list verbatim (`PATH_LOG_FILES`). A path that is
    already ``<local>/...`` or ``~/...``, a relative path and a URL are left alone. A space in the last name of a
    path ends it early (``/data/my file.png`` -> ``<local>/my file.png``); a space in a folder name does not."""
    def local(match: re.Match[str]) -> str:
        name = match.group(0).rstrip("/").rsplit("/", 1)[-1]
        return f"{LOCAL}/{name}" if name else LOCAL

    return _ABSOLUTE.sub(local, text)


def _is_temporary(name: str) -> bool:
    return name.endswith(".tmp")


def stage_redacted(folder: Path, replacements: Sequence[tuple[str, str]]) -> Path:
    """Write ``.FOLDER.hub-upload`` (`staged_folder`): the records and cards of ``folder`` (`REDACTED_FILES`)
    redacted (`redact_text`; in skip logs every absolute path, `redact_absolute_paths`), every other file
    hard-linked (copied where a link is impossible), temporaries (``*.tmp``), hidden entries and staged copies of sub-folders left out. Returns
    the copy.

    The copy is built in ``.FOLDER.hub-upload.tmp`` and renamed when complete; a failure (a full disk) removes
    it, so a half-built copy is never left to be uploaded by hand (`hf_upload_advice` then names ``folder``)."""
    folder = Path(folder)
    final = staged_folder(folder)
    stage = final.with_name(final.name + ".tmp")  # built here, renamed to `final` only when complete
    shutil.rmtree(final, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)
    try:
        _stage_into(folder, stage, replacements)
        os.replace(stage, final)
    except BaseException:  # a full disk: no half-built copy left (`hf_upload_advice` then names ``folder``)
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return final


def _stage_into(folder: Path, stage: Path, replacements: Sequence[tuple[str, str]]) -> None:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _is_temporary(d) and not is_hidden_from_loaders(d))
        here = Path(dirpath)
        target_dir = stage / here.relative_to(folder)
        target_dir.mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            if _is_temporary(name) or name.startswith("."):
                continue
            src, dst = here / name, target_dir / name
            if name in REDACTED_FILES:
                text = redact_text(src.read_text(encoding="utf-8", errors="surrogateescape"), replacements)
                if name in PATH_LOG_FILES:
                    text = redact_absolute_paths(text)
                dst.write_text(text, encoding="utf-8", errors="surrogateescape")
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def stage_write_failure(error: BaseException, folder: str | Path) -> str | None:
    """The start of the one line for a push of ``folder`` that stopped because its upload copy (`staged_folder`)
    could not be written (a full disk, a quota; `stage_redacted` has then removed the partial copy): ``cannot
    write the upload copy STAGE (No space left on device): nothing was uploaded and the partial copy is removed;
    free space beside the folder first``.
    None for any other failure (the network, the token): the caller says ``push to REPO failed: ...``."""
    from scf.shards import WRITE_ERRNOS, os_error_of

    stage = staged_folder(folder)
    os_error = os_error_of(error)
    if os_error is None or os_error.errno not in WRITE_ERRNOS or stage.is_dir():
        return None
    return (f"cannot write the upload copy {stage} ({os_error.strerror or os_error}): nothing was uploaded and the "
            "partial copy is removed; free space beside the folder first")


def upload_redacted(api: Any, folder: str | Path, *, repo_id: str, repo_type: str, private: bool,  # noqa: ANN401
                    commit_message: str, paths: Iterable[str | Path | None]) -> str:
    """Create the repository (``exist_ok``) and ``api.upload_folder`` a copy of ``folder`` in which the given local
    paths (and the home folder) read ``<local>/<name>`` (and ``~``) in the records, cards, skip logs and model
    configs (`REDACTED_FILES`; tokenizer and vocabulary files are uploaded as they are).

    The local files keep their paths (a resume reads them). The copy (the hidden ``.FOLDER.hub-upload``,
    `staged_folder`) is written before the Hub is contacted and removed once the upload succeeded; after a failure
    it is kept, so that ``hf upload`` of it uploads no local path either (delete it afterwards). Being a
    dot-folder, it is never loaded as data (`scf.schema.load_table`, ``datasets``).

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
    """Where `upload_redacted` stages the copy of ``folder`` (kept after a failed upload): the hidden
    ``.FOLDER.hub-upload`` beside it, which no loader reads as data (`scf.schema.is_hidden_from_loaders`)."""
    folder = Path(folder)
    if not folder.name or folder.name == "..":  # "." or "..": name it by the folder it is
        folder = folder.resolve()
    return folder.with_name("." + folder.name + STAGE_SUFFIX)


def hf_upload_advice(repo_type: str, repo_id: str, folder: str | Path, *, private: bool = True) -> str:
    """The ``hf upload`` command to suggest after a failed push of ``folder``: of the copy without local paths
    (`staged_folder`) that the failed push left, or of ``folder`` itself if that copy could not be written (a full
    disk).

    Args:
        repo_type: ``dataset`` or ``model``.
        repo_id: the Hub repository.
        folder: the folder that was pushed.
        private: whether the suggested command creates the repository private.

    Returns:
        ``hf upload [--repo-type dataset] [--private] REPO FOLDER (...)``.
    """
    stage = staged_folder(folder)
    options = ("--repo-type dataset " if repo_type == "dataset" else "") + ("--private " if private else "")
    if not stage.is_dir():
        return f"hf upload {options}{repo_id} {folder} (its text files may name local paths)"
    return f"hf upload {options}{repo_id} {stage} (its copy without local paths; delete it afterwards)"
