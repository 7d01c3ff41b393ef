"""One `scf ingest` per dataset folder (review 16 M1) and an output it cannot write (review 16 L1): one line."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from ingest_cli import ingest, rows, write_image


def _kill(holder: subprocess.Popen) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()


def _project(tmp_path: Path, face) -> tuple[Path, Path]:
    root = tmp_path / "captures"
    for i in range(3):
        write_image(root / f"{i}.png", face)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,split\n0.png,1,train\n1.png,0,train\n2.png,0,test\n", encoding="utf-8")
    return root, manifest


def test_a_second_ingest_into_a_held_config_folder_is_refused_and_a_killed_one_leaves_no_lock(tmp_path, face, hold_folder):
    """Two ingests into one folder at once: one died in a traceback (a shard's temporary renamed away)."""
    root, manifest = _project(tmp_path, face)
    out = tmp_path / "bench"
    args = ("--source", "csv", "--root", str(root), "--list", str(manifest), "--out", str(out), "--config", "mine")
    holder = hold_folder(out / "mine", "scf ingest")
    try:
        r = ingest(*args)
        assert r.exit_code == 1
        assert r.output.count("\n") == 1 and "Traceback" not in r.output, r.output
        assert r.output.startswith(f"Error: {out / 'mine'} is in use by scf ingest (pid {holder.pid} on ")
        assert r.output.rstrip().endswith("wait for it to end or choose another folder")
        assert sorted(p.name for p in (out / "mine").iterdir()) == [".lock"]  # nothing written
        # the lock is per config folder: another source of the same --out goes on meanwhile
        r = ingest(*args[:-1], "other")
        assert r.exit_code == 0, r.output
        assert len(rows(out / "other")) == 3
    finally:
        _kill(holder)
    r = ingest(*args, "--workers", "2")  # the kill -9 left no stale lock; the workers never take it
    assert r.exit_code == 0, r.output
    assert len(rows(out / "mine")) == 3

    # .lock is no data: not in the card, not in the loaded rows, not in the content hash of the Arrow copy
    from scf.schema import _local_cache_dir, load_table

    assert ".lock" not in (out / "mine" / "README.md").read_text(encoding="utf-8")
    assert ".lock" not in (out / "README.md").read_text(encoding="utf-8")
    before = _local_cache_dir(out / "mine")
    holder = hold_folder(out / "mine", "scf ingest")  # a held folder can be read (training on a dataset another ingest extends)
    try:
        assert _local_cache_dir(out / "mine") == before
        assert sum(len(split) for split in load_table(out, "benchmark").values()) == 6
    finally:
        _kill(holder)


def test_the_content_hash_of_a_folder_without_data_skips_the_lock_files(tmp_path):
    from scf.schema import _local_cache_dir

    folder = tmp_path / "flat"
    folder.mkdir()
    (folder / "train-00000.parquet").write_bytes(b"x")
    before = _local_cache_dir(folder)
    (folder / ".lock").write_text("{}", encoding="utf-8")
    (folder / ".lock.excl").write_text("{}", encoding="utf-8")
    assert _local_cache_dir(folder) == before


def test_an_output_that_cannot_be_written_is_one_line_naming_it(tmp_path, face):
    """Review 16 L1: a read-only --out gave a 12-frame traceback (here, as root may write anywhere, a file
    stands where a folder must be created, which fails the same way)."""
    root, manifest = _project(tmp_path, face)
    args = ("--source", "csv", "--root", str(root), "--list", str(manifest))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "mine").write_text("not a folder", encoding="utf-8")
    for out, config, named, why in (
            (blocker / "bench", (), blocker / "bench", "Not a directory"),  # --out under a file
            (blocker / "bench", ("--config", "mine"), blocker / "bench" / "mine", "Not a directory"),  # the same
            (parent, ("--config", "mine"), parent / "mine", "File exists")):  # the config folder is a file
        r = ingest(*args, "--out", str(out), *config)
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        assert r.output.count("\n") == 1, r.output
        assert r.output.startswith(f"Error: {named}: cannot create or write to this folder ({why})"), r.output

    # the folder can be held, but a part of it cannot be written: one line naming the folder and the file
    out = tmp_path / "bench"
    out.mkdir()
    (out / "data").write_text("a file where the shards go", encoding="utf-8")
    r = ingest(*args, "--out", str(out))
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    # the last line (INFO log lines may precede it when an earlier test configured logging)
    assert r.output.splitlines()[-1].startswith(f"Error: cannot write to {out}: {out / 'data'}: "), r.output
    (out / "data").unlink()
    (out / "README.md").mkdir()  # the card, written last through a temporary renamed into place
    r = ingest(*args, "--out", str(out))
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.splitlines()[-1] == f"Error: cannot write to {out}: {out / 'README.md'}: Is a directory"
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
