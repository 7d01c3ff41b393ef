"""One run per output folder: `output_lock` (a leaf module, standard library only).

Two long jobs writing the same folder at once (``ifas-train``, ``scf caption`` or ``ifas-eval`` started twice on
one ``--output``/``--out``) interleave their files and both report success. Each command therefore holds
``<folder>/.lock`` for its whole run and a second one is refused at once, in one line naming the holder.

The lock is an advisory ``flock`` on ``.lock``, released by the kernel when the process ends, so a crash or a
``kill -9`` never leaves a stale lock and the file itself may stay. Where ``flock`` is unavailable (some network
file systems, Windows) a ``.lock.excl`` file created with ``O_CREAT | O_EXCL`` holds the owner instead; it is
removed on exit, and one left by a dead process on the same host is taken over (one left on another node must be
deleted by hand: the message says which file). In a distributed run only one process (rank 0) takes the lock.

The lock files are created with mode 0666 less the umask, so in a group-shared folder (umask 002) every member
can take them; a ``.lock`` another user created read-only for others is still locked through a read-only open
(its owner record then keeps the previous holder's name).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"
EXCL_NAME = ".lock.excl"


class FolderInUse(RuntimeError):
    """Another run holds the folder, or the folder cannot be created or written; the message is one line."""


def _owner(command: str) -> dict[str, object]:
    return {"command": command, "pid": os.getpid(), "host": socket.gethostname(),
            "since": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}


def _read_owner(path: Path) -> dict[str, object]:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _in_use(folder: Path, owner: dict[str, object], excl: bool = False) -> FolderInUse:
    if owner.get("pid"):
        who = (f"{owner.get('command', 'another run')} (pid {owner['pid']} on {owner.get('host', '?')}, "
               f"since {owner.get('since', '?')})")
    else:
        who = "another run"
    hint = f" (if that run has ended, e.g. on another node, delete {folder / EXCL_NAME})" if excl else ""
    return FolderInUse(f"{folder} is in use by {who}; wait for it to end or choose another folder{hint}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


@contextlib.contextmanager
def _excl_lock(folder: Path, owner: dict[str, object]) -> Iterator[Path]:
    path = folder / EXCL_NAME
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            break
        except FileExistsError:
            held = _read_owner(path)
            if attempt == 0 and _stale(path, held, owner):
                logger.warning("%s: taking over %s, whose run has ended", folder, path.name)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            raise _in_use(folder, held, excl=True) from None
        except OSError as e:
            raise FolderInUse(f"{folder}: cannot create or write to this folder ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # inside the guard: a full disk leaves no empty lock
            json.dump(owner, f)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def _stale(path: Path, held: dict[str, object], owner: dict[str, object]) -> bool:
    """An exclusive lock file whose run has ended: its pid is dead on this host, or it holds no owner record
    (a run that died between creating and writing it) and is older than a minute."""
    pid = held.get("pid")
    if isinstance(pid, int):
        return held.get("host") == owner["host"] and not _pid_alive(pid)
    try:
        return time.time() - path.stat().st_mtime > 60
    except OSError:
        return False


@contextlib.contextmanager
def output_lock(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold ``folder`` for one run; the folder is created when missing.

    A folder the lock created that holds nothing but the lock files when it is released (a run refused at
    once, e.g. for a mistyped input) is removed again, so a failed start leaves no empty run folder behind.

    Args:
        folder: the run's output folder.
        command: who holds it, shown to a second run (e.g. ``"ifas-train"``).

    Yields:
        The lock file's path.

    Raises:
        FolderInUse: another process holds the folder (the message names its command, pid, host and start
            time), or the folder cannot be created or written (the message names it and the reason).
    """
    folder = Path(folder)
    lock = folder / LOCK_NAME
    writable = True
    created = False  # by this call's own mkdir (atomic: two starts cannot both think they created it)
    try:
        try:
            folder.mkdir(parents=True)
            created = True
        except FileExistsError:
            if not folder.is_dir():
                raise
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides (002: the group shares it)
        except PermissionError:
            if not lock.is_file():
                raise
            fd = os.open(lock, os.O_RDONLY)  # another user's .lock without group write: flock works read-only
            writable = False
    except OSError as e:
        where = lock if lock.exists() and os.access(folder, os.W_OK) else folder
        raise FolderInUse(f"{where}: cannot create or write to this {'file' if where == lock else 'folder'} "
                          f"({e.strerror or e})") from None
    owner = _owner(command)
    try:
        flocked = False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                flocked = True
            except BlockingIOError:
                raise _in_use(folder, _read_owner(lock)) from None
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
                logger.info("%s: flock unsupported here (%s); using %s", folder, e.strerror, EXCL_NAME)
        if flocked and writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner).encode("utf-8"), 0)
        # without flock, .lock.excl holds the folder; a refusal raises here, before anything is removed
        with contextlib.nullcontext(lock) if flocked else _excl_lock(folder, owner) as path:
            try:
                yield path
            finally:
                if created:  # still held (flock, or our .lock.excl): no other run can have started in it
                    _remove_if_only_lock(folder)
    finally:
        os.close(fd)  # releases the flock


def _remove_if_only_lock(folder: Path) -> None:
    """Remove ``folder`` when it holds nothing but lock files (best effort: a folder in use stays)."""
    with contextlib.suppress(OSError):
        entries = list(folder.iterdir())
        if all(is_lock_file(e) for e in entries):
            for e in entries:
                e.unlink()
            folder.rmdir()


SHARED_PROBE_WAIT_S = 60.0
"""Seconds a process of a distributed run looks for the probe file rank 0 wrote into the output folder before it
reports that it does not see that folder (a node-local folder on a multi-node run): `wait_for_file`.

A process that sees the file (every correct start) stops looking at once, so only a refused start pays the wait.
It is this long because NFS (default ``lookupcache=all``) keeps a cached "no such file" for a path that a node
looked up before it existed (a job script's ``[ -d $OUT ]``, an earlier refused attempt) until the parent
folder's attribute cache expires: 30 s (``acdirmin``) up to 60 s (``acdirmax``)."""


def wait_for_file(path: Path, seconds: float) -> bool:
    """Whether ``path`` exists, looking again for up to ``seconds``.

    Before each new look the parent folder is listed (``os.listdir``), which makes a network file system
    revalidate its cached view of the folder, so a file written on another node shows up as soon as it can.
    """
    deadline = time.monotonic() + seconds
    start = time.monotonic()
    while True:
        if path.is_file():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25 if time.monotonic() - start < 5 else 1.0)
        with contextlib.suppress(OSError):
            os.listdir(path.parent)


def not_shared_problem(folder: str | Path, views: list[tuple[int, str, bool]], waited_s: float, needs: str) -> str:
    """The one line for ranks that did not see rank 0's probe file in ``folder`` ('' when every rank saw it).

    Args:
        folder: the output folder, as the user gave it.
        views: ``(rank, host, saw the probe)`` of every rank, rank 0 first.
        waited_s: how long the ranks looked (`wait_for_file`).
        needs: the end of the line, e.g. ``"a run on several nodes needs --output"``.
    """
    blind = [(rank, host) for rank, host, seen in views if not seen]
    if not blind:
        return ""
    hosts = sorted({host for _, host in blind})
    return (f"{folder} is not the same folder on every process: rank(s) "
            f"{', '.join(str(r) for r, _ in blind[:8])}{' ...' if len(blind) > 8 else ''} (on "
            f"{', '.join(hosts[:4])}) do not see the file rank 0 (on {views[0][1]}) wrote there (looked for "
            f"{waited_s:g} s); {needs} on a file system that every node shares")


def is_lock_file(path: str | Path) -> bool:
    """True for the lock files of `output_lock` (to leave out of listings and uploads)."""
    return Path(path).name in (LOCK_NAME, EXCL_NAME)


__all__ = ["EXCL_NAME", "LOCK_NAME", "SHARED_PROBE_WAIT_S", "FolderInUse", "is_lock_file", "not_shared_problem",
           "output_lock", "wait_for_file"]
