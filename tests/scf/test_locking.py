"""One run per output folder (review 16 M1): a second run on the same folder is refused in one line naming the
first; a crashed run leaves no stale lock; the O_EXCL fallback for file systems without flock."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from scf import locking
from scf.locking import FolderInUse, output_lock


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "run"
    with output_lock(out, "ifas-train") as lock:
        assert lock == out / ".lock" and out.is_dir()
        with pytest.raises(FolderInUse) as e, output_lock(out, "ifas-train"):
            pass
        msg = str(e.value)
        assert "\n" not in msg
        assert msg.startswith(f"{out} is in use by ifas-train (pid {os.getpid()} on ")
        assert msg.endswith("; wait for it to end or choose another folder")
    with output_lock(out, "ifas-eval"):  # released at exit: the next run takes it
        assert json.loads((out / ".lock").read_text())["command"] == "ifas-eval"


def test_another_process_holding_the_folder_blocks_and_its_kill_releases_it(tmp_path, hold_folder):
    out = tmp_path / "run"
    holder = hold_folder(out, "scf caption")
    try:
        with pytest.raises(FolderInUse, match=rf"in use by scf caption \(pid {holder.pid} on "):
            with output_lock(out, "scf caption"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with output_lock(out, "scf caption"):  # kill -9 left no stale lock
        pass


def test_an_unwritable_folder_is_one_line_naming_it(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(FolderInUse, match=rf"^{parent / 'run'}: cannot create or write to this folder"):
            with output_lock(parent / "run", "ifas-train"):
                pass
    finally:
        parent.chmod(0o700)


def test_a_file_in_place_of_the_folder_is_one_line(tmp_path):
    out = tmp_path / "run"
    out.write_text("x")
    with pytest.raises(FolderInUse, match=rf"^{out}: cannot create or write to this folder"):
        with output_lock(out, "ifas-eval"):
            pass


@pytest.fixture
def no_flock(monkeypatch):
    """A file system whose flock fails with ENOLCK (some NFS mounts)."""
    def flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(locking.fcntl, "flock", flock)


def test_without_flock_an_exclusive_file_holds_the_folder_and_is_removed_at_exit(tmp_path, no_flock):
    out = tmp_path / "run"
    with output_lock(out, "ifas-train") as lock:
        assert lock == out / ".lock.excl"
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(FolderInUse, match=r"in use by ifas-train \(pid "), output_lock(out, "ifas-train"):
            pass
    assert not (out / ".lock.excl").exists()


def test_without_flock_a_dead_owners_file_on_this_host_is_taken_over(tmp_path, no_flock):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    time.sleep(0.05)
    (out / ".lock.excl").write_text(json.dumps({"command": "ifas-train", "pid": dead.pid,
                                                "host": locking.socket.gethostname(), "since": "x"}))
    with output_lock(out, "ifas-train"):
        assert json.loads((out / ".lock.excl").read_text())["pid"] == os.getpid()
    (out / ".lock.excl").write_text(json.dumps({"command": "ifas-train", "pid": dead.pid,
                                                "host": "another-node", "since": "x"}))
    with pytest.raises(FolderInUse, match=rf"pid {dead.pid} on another-node"), output_lock(out, "ifas-train"):
        pass


def test_lock_files_follow_the_umask_so_a_group_shared_folder_stays_usable(tmp_path, monkeypatch):
    """Review 17 H1: .lock was created 0644 whatever the umask, so a second member of a group-shared folder
    (umask 002) could not open it and every command said it could not write the folder."""
    old = os.umask(0o002)
    try:
        with output_lock(tmp_path / "a", "ifas-train") as lock:
            assert lock.stat().st_mode & 0o777 == 0o664
        def flock(fd, op):
            raise OSError(errno.ENOLCK, "No locks available")
        monkeypatch.setattr(locking.fcntl, "flock", flock)
        with output_lock(tmp_path / "b", "ifas-train") as lock:
            assert lock.name == ".lock.excl" and lock.stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_another_users_read_only_lock_file_is_still_locked(tmp_path, monkeypatch):
    """A .lock that this user may read but not write (made by a colleague under umask 022) is flocked through a
    read-only open; the folder is still held exclusively."""
    out = tmp_path / "run"
    out.mkdir()
    with output_lock(out, "scf caption"):  # the colleague's earlier run
        pass
    real_open = os.open

    def open_(path, flags, *args, **kw):
        if str(path).endswith(".lock") and flags & os.O_RDWR:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(locking.os, "open", open_)
    with output_lock(out, "ifas-eval"):
        monkeypatch.setattr(locking.os, "open", real_open)
        with pytest.raises(FolderInUse, match="is in use by scf caption"), output_lock(out, "ifas-eval"):
            pass  # the record still names the last writer: documented


def test_without_flock_an_empty_lock_file_of_a_run_that_died_is_taken_over_after_a_minute(tmp_path, no_flock):
    """Review 17 M1: a run that died between creating .lock.excl and writing its owner left a folder locked
    for good; a lock from another node names the file to delete."""
    out = tmp_path / "run"
    out.mkdir()
    excl = out / ".lock.excl"
    excl.write_text("")
    with pytest.raises(FolderInUse, match=rf"delete {excl}\)$"), output_lock(out, "ifas-train"):
        pass  # a fresh empty file may be a run writing its record right now
    os.utime(excl, (time.time() - 120, time.time() - 120))
    with output_lock(out, "ifas-train"):
        assert json.loads(excl.read_text())["pid"] == os.getpid()
    assert not excl.exists()


def test_without_flock_a_failed_owner_write_leaves_no_lock_behind(tmp_path, no_flock, monkeypatch):
    def dump(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(locking.json, "dump", dump)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"), output_lock(out, "ifas-train"):
        pass
    assert not (out / ".lock.excl").exists()


def test_a_folder_the_lock_created_is_removed_when_the_run_wrote_nothing(tmp_path):
    out = tmp_path / "new" / "run"
    with pytest.raises(ValueError), output_lock(out, "ifas-train"):  # a run refused at once (bad input)
        raise ValueError("mistyped --dataset")
    assert not out.exists() and (tmp_path / "new").is_dir()
    with output_lock(out, "ifas-train"):  # a run that wrote something keeps its folder
        (out / "trainer_state.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == [".lock", "trainer_state.json"]
    with output_lock(out, "ifas-train"):  # a folder that existed before is never removed, even left empty
        (out / "trainer_state.json").unlink()
    assert [p.name for p in out.iterdir()] == [".lock"]


def test_without_flock_a_folder_the_lock_created_is_removed_too(tmp_path, no_flock):
    out = tmp_path / "run"
    with output_lock(out, "scf caption"):
        assert (out / ".lock.excl").is_file()
    assert not out.exists()


def test_without_flock_a_refused_run_never_removes_the_holders_folder(tmp_path, no_flock, monkeypatch):
    """review23 L1: a refused start that had looked before the holder's mkdir (an NFS cached "no such file")
    thought it created the folder and, refused, removed the holder's lock files and folder."""
    out = tmp_path / "run"
    with output_lock(out, "ifas-train"):
        held = sorted(p.name for p in out.iterdir())
        with monkeypatch.context() as m:
            m.setattr(locking.Path, "exists", lambda self: False)  # "not there yet", as a stale NFS cache says
            with pytest.raises(FolderInUse, match="is in use by ifas-train"), output_lock(out, "ifas-train"):
                pass
        assert sorted(p.name for p in out.iterdir()) == held == [".lock", ".lock.excl"]
    assert not out.exists()  # the holder created it and wrote nothing: removed at its release
