"""Writing ifas-eval's output files: whole files only, and a failed write that names its file."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""A full disk, a quota, a file too large for its file system: free space, then rerun."""
WRITE_ERRNOS = SPACE_ERRNOS | {errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}
"""Errors that mean an output could not be written (a full, failing, read-only or foreign disk)."""


class OutputWriteError(OSError):
    """An output file of the run could not be written.

    ``filename`` is the file (or folder) that failed, ``strerror`` the system's reason; ``note`` says what the
    failure left current (e.g. "results.* and run.json are still the previous run's").
    """

    def __init__(self, code: int | None, reason: str, filename: str, note: str = "") -> None:
        super().__init__(code, reason, filename)
        self.note = note

    def __str__(self) -> str:
        text = f"cannot write {self.filename} ({self.strerror})"
        return f"{text}; {self.note}" if self.note else text


class ReportInputError(OSError):
    """An input of the report step (the checkpoint, the benchmark rows ``--explain`` shows) could not be read.

    Never a write failure: it carries no errno, so `write_problem` leaves it alone and it is said as it is, one
    line naming what could not be read, with ``note`` (what the failure left current).
    """

    def __init__(self, error: OSError, step: str, note: str) -> None:
        where = error.filename2 or error.filename
        if error.errno is not None and where is not None:
            text = f"cannot read {os.fsdecode(where)} ({error.strerror or os.strerror(error.errno)}) for {step}"
        else:  # no file named (transformers' "couldn't connect to the Hub"): its own words
            text = f"cannot read what {step} needs: {' '.join(str(error).split()) or type(error).__name__}"
        super().__init__(f"{text}; {note}" if note else text)
        self.error = error


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], note: str = "") -> Iterator[None]:
    """Turn an `OSError` raised inside into an `OutputWriteError` naming ``path`` (when the error names no
    file: a ``write()`` on a full disk names none) and carrying ``note`` (also given to an `OutputWriteError`
    from inside that has none)."""
    try:
        yield
    except OutputWriteError as e:  # named already, deeper in: add the note it lacks
        e.note = e.note or note
        raise
    except OSError as e:
        where = e.filename2 or e.filename or path
        raise OutputWriteError(e.errno, e.strerror or " ".join(str(e).split()) or type(e).__name__,
                               os.fsdecode(where), note) from e


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a hidden temporary renamed into place (the temporary is removed
    when the write fails); raises `OutputWriteError` naming ``path``."""
    from scf.shards import write_text_atomic as _atomic

    with writing(path):
        _atomic(path, text)


def write_files_together(files: Mapping[Path, str], what: str) -> None:
    """Write several files as one set: every file to a hidden temporary first, then all renamed into place.

    A failure while writing the temporaries (a full disk) removes them and leaves every previous file as it
    was, so a folder never holds a mix of two runs' files. A rename cannot need space; should one fail anyway,
    the files already renamed are named in the error.

    Args:
        files: path -> text (UTF-8).
        what: the set's name in messages, e.g. ``"results.md, results.csv, results.json and run.json"``.

    Raises:
        OutputWriteError: naming the file that failed and which files are current.
    """
    temps: dict[Path, Path] = {path: path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in files}
    try:
        for path, text in files.items():
            with writing(path, note=f"{what} are still the previous run's (none was replaced)"):
                temps[path].write_text(text, encoding="utf-8", newline="")  # the text as it is (CSV: \r\n)
        done: list[str] = []
        for path, tmp in temps.items():
            with writing(path, note=(f"{', '.join(done)} {'is' if len(done) == 1 else 'are'} this run's, the "
                                     "others the previous run's") if done else
                         f"{what} are still the previous run's (none was replaced)"):
                os.replace(tmp, path)
            done.append(path.name)
    finally:
        for tmp in temps.values():
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def write_problem(e: OSError, out: Path | None, *, kept: str, resumes: bool) -> str | None:
    """The one line ``ifas-eval`` ends with when ``e`` is a failed write of its output, else None.

    Args:
        e: the error.
        out: the run's output folder (named when the error names no file).
        kept: what finished work is kept, e.g. ``"finished score files in eval/scores are kept"``.
        resumes: whether a rerun of the same command resumes from that work (else it writes everything again).
    """
    if e.errno not in WRITE_ERRNOS:
        return None
    named = isinstance(e, OutputWriteError)
    if not named:
        where = e.filename2 or e.filename
        if where is None:
            if e.errno not in SPACE_ERRNOS:
                return None  # an unnamed EIO/EACCES could be a read: said as it is
            where = f"{out} (or $HF_DATASETS_CACHE or $TMPDIR)" if out is not None else None
        elif out is None or not Path(os.path.abspath(os.fsdecode(where))).is_relative_to(os.path.abspath(out)):
            return None  # not an output of the run (an input, a cache): said as it is
        where = os.fsdecode(where) if where is not None else "an output file"
        e = OutputWriteError(e.errno, e.strerror or " ".join(str(e).split()), where)
    rerun = "rerun the same command" + (": it resumes from them" if resumes else "")
    if e.errno in SPACE_ERRNOS:
        advice = f"free space and {rerun}"
    elif e.errno == errno.EIO:
        advice = f"once the disk works again, {rerun}"
    else:
        advice = f"make it writable and {rerun}"
    return f"{e}: {kept}; {advice}"


TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.tmp$")
"""The name of a temporary written before its rename into place: ``.<file name>.<process id>.tmp``."""
RESULT_NAMES = re.compile(r"results\.(md|csv|json)|run\.json")
"""The files ifas-eval writes through temporaries in ``--out`` (`write_files_together`)."""
SCORE_FOLDER_NAMES = re.compile(r"scored_with\.json")
"""... in a score folder ``--out/scores/<setting>/<checkpoint>/`` (the ``.csv.partial`` files are appended)."""
REPORT_NAMES = re.compile(r"index\.html|attack_types\.(md|csv)|(roc|det|hist)_.+\.png")
"""... in the report folder (``--explain``'s crops in ``images/`` are written directly, never through one)."""


def _process_alive(pid: int) -> bool | None:
    """Whether ``pid`` is a running process of this machine; None where that cannot be asked (Windows, whose
    ``os.kill`` would end it)."""
    if os.name == "nt":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


def sweep_temporaries(folder: Path, names: re.Pattern[str], *, locked: bool) -> list[Path]:
    """Remove the temporaries that a killed process left in ``folder`` (a kill between a temporary's write and
    its rename); returns the removed paths.

    Only plain files named ``.<name>.<pid>.tmp`` (`TEMPORARY_NAME`) whose ``<name>`` matches ``names`` whole,
    whose ``<pid>`` is not this process and is no running process of this machine (a second guard: a pid
    reused by another process keeps its file until a later run). Nothing else in ``folder`` is touched, and
    subfolders are not entered. Where the liveness of a process cannot be asked (Windows), only a ``locked``
    folder (held by this run's `scf.locking.output_lock`, so no other ifas-eval writes it) is swept. A file
    that cannot be removed is left, with a debug log line: sweeping never fails a run.
    """
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no folder yet (a first run), or unreadable: nothing to sweep
        return []
    removed: list[Path] = []
    for entry in entries:
        match = TEMPORARY_NAME.match(entry.name)
        if match is None or not names.fullmatch(match["name"]):
            continue
        pid = int(match["pid"])
        alive = _process_alive(pid) if pid != os.getpid() else True
        if alive or (alive is None and not locked):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as e:
            logger.debug("cannot remove the stale temporary %s: %s", entry.path, e)
            continue
        removed.append(Path(entry.path))
    if removed:
        logger.info("removed %d temporary file(s) a stopped run left in %s", len(removed), folder)
    return removed


def sweep_stale_temporaries(out: Path | None, report: Path | None) -> list[Path]:
    """At the start of a run, while its output folders are locked: remove the temporaries (`sweep_temporaries`)
    a killed run left in ``out`` (the tables), its score folders ``out/scores/*/*`` and ``report``.

    Args:
        out: the ``--out`` folder, or None when the run writes none.
        report: the report folder, or None when the run holds no lock on it (``--no-report --report DIR``).

    Returns:
        The removed paths.
    """
    removed: list[Path] = []
    if out is not None:
        removed += sweep_temporaries(out, RESULT_NAMES, locked=True)
        with contextlib.suppress(OSError):
            for folder in sorted(out.glob("scores/*/*")):
                if folder.is_dir() and not folder.is_symlink():
                    removed += sweep_temporaries(folder, SCORE_FOLDER_NAMES, locked=True)
    if report is not None:
        removed += sweep_temporaries(report, REPORT_NAMES, locked=True)
    return removed
