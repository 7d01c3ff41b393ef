"""Incremental, resumable writing of a dataset as parquet shards in the Hugging Face Hub layout.

Long jobs (ingest, captioning) write their rows through a `ShardWriter`: rows are buffered per split and
flushed as ``data/<split>-<NNNNN>.parquet`` once a shard is full. A shard is written to a hidden temporary
file (``data/.<split>-<NNNNN>.parquet.tmp``: `datasets` skips dot-files when it resolves a folder's data files,
so a leftover of a kill never breaks ``load_dataset``) and renamed into place, so a killed job leaves only
complete shards. A shard that is unreadable all the same (truncated by a full disk or a bad copy) stops the
resume with a `ShardError` naming it: delete it and rerun, and its rows are redone. On restart the writer reads the key column
(by default ``path``; any column that identifies an item) of the shards already on disk; the job skips those
keys, so nothing is redone or duplicated, and at most one shard's worth of work per split is lost.

The folder is a dataset as the Hub stores one: ``datasets.load_dataset(FOLDER)`` loads it (splits from the
file names), and ``huggingface_hub.upload_folder`` publishes it unchanged.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import pyarrow
    import pyarrow.parquet

logger = logging.getLogger(__name__)

SHARD_PATTERN = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})\.parquet$")
SKIPPED_FILE = "skipped.jsonl"


class ShardError(ValueError):
    """A shard or skip log in an output folder cannot be read (the message names the file and what to do)."""


NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
"""The ``errno`` values of a file system that takes no more data (full disk, quota, file too large, read-only):
whatever file they name, the failure was a write, not a read of an input."""
WRITE_ERRNOS = NO_ROOM_ERRNOS | {errno.EACCES, errno.EPERM, errno.EIO}
"""The ``errno`` values of an output that cannot be written (`NO_ROOM_ERRNOS`, no permission, I/O error):
`write_error_message` turns them into one line."""
_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")


def os_error_of(error: BaseException) -> OSError | None:
    """The operating-system error behind ``error``: itself, one in its ``__cause__`` / ``__context__`` chain
    (`datasets` wraps a full cache in ``DatasetGenerationError``), or one that safetensors' Rust writer spelled
    out in its message (``SafetensorError: Error while serializing: I/O error: No space left on device (os
    error 28)``; safetensors raises no `OSError`). None when there is none (with an ``errno``)."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return e
        if type(e).__name__ == "SafetensorError" and (m := _OS_ERROR_IN_TEXT.search(str(e))):
            code = int(m.group(1))
            return OSError(code, os.strerror(code))
        e = e.__cause__ or e.__context__
    return None


def write_error_message(error: BaseException, where: str | Path, *, kept: str = "what was finished is kept",
                        rerun: str = "rerun the same command to resume") -> str | None:
    """One line for an output that could not be written, or None when ``error`` is not such an error.

    ``where`` is the folder (or file) being written; the file the error names, when it names one, is added.
    Python's and pyarrow's write errors often name no file, so ``where`` is what tells the user which file
    system is full (``--out``, the `datasets` cache, ``/tmp``). Example::

        cannot write to runs/scf/corpus.tmp (No space left on device): what was finished is kept; free space
        (or raise the quota) and rerun the same command to resume

    Args:
        error: the exception (an `OSError`, or anything `os_error_of` finds one behind).
        where: the output folder or file.
        kept: what the user keeps (``the finished shards are kept``).
        rerun: what to do once the cause is fixed.
    """
    e = os_error_of(error)
    if e is None or e.errno not in WRITE_ERRNOS:
        return None
    name = os.fsdecode(e.filename) if e.filename else ""
    target = f"{where}" + (f" ({name})" if name and os.path.abspath(name) != os.path.abspath(where) else "")
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "free space (or raise the quota) and"
    elif e.errno == errno.EIO:
        fix = "check the disk (or network file system) and"
    else:
        fix = "make it writable (or choose another folder) and"
    return f"cannot write to {target} ({e.strerror or e}): {kept}; {fix} {rerun}"


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pyarrow.Table:
    """Read a parquet file (only ``columns``, if given), opened by Python and handed to pyarrow as a file.

    pyarrow encodes a ``str`` path as UTF-8 whatever the locale, while Python (and `datasets`, which writes the
    shards) encodes it with the file-system encoding: under a non-UTF-8 locale (``LANG=en_US.ISO-8859-1``) a
    path with ``é`` names another file for pyarrow, which then does not find a shard Python just wrote.
    Opened here, the path is Python's. pyarrow still reads only the footer and the columns asked for.

    The read is synchronous, on this thread (`pyarrow.parquet.ParquetFile`, not the dataset scanner of
    ``read_table``; ``pre_buffer=False``, ``use_threads=False``): with a Python file, every chunk pyarrow reads
    is a Python ``bytes`` object, and the scanner's I/O threads release such chunks, sometimes after the call
    has returned. When that release came while the interpreter was exiting, the process aborted ("terminate
    called without an active exception", exit 134) after its work was done (review21 M2: about one run in
    five of a script that reads shards and exits).
    """
    import pyarrow.parquet as pq

    with open(path, "rb") as f:
        return pq.ParquetFile(f, pre_buffer=False).read(columns=columns, use_threads=False)


def read_parquet_metadata(path: str | Path) -> pyarrow.parquet.FileMetaData:
    """The footer of a parquet file, opened by Python (see `read_parquet`)."""
    import pyarrow.parquet as pq

    with open(path, "rb") as f:
        return pq.read_metadata(f)


def write_parquet(table: pyarrow.Table, path: str | Path) -> None:
    """Write ``table`` as a parquet file opened by Python (see `read_parquet`)."""
    import pyarrow.parquet as pq

    with open(path, "wb") as f:
        pq.write_table(table, f)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a hidden temporary of this process renamed into place.

    A kill never leaves the file torn, and two processes writing it at once each write a whole file (the last
    rename wins). The temporary is removed when the write fails (a full disk).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


class ShardWriter:
    """Buffers rows per split and writes complete parquet shards atomically; resumable by a key column.

    Args:
        out: dataset folder; shards go to ``out/data``.
        features: the `datasets.Features` every row is encoded with.
        shard_size: rows per shard.
        key_column: column whose values identify finished items across restarts.
    """

    def __init__(self, out: str | Path, features: datasets.Features, *, shard_size: int = 1000,
                 key_column: str = "path") -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        if key_column not in features:
            raise ValueError(f"key column {key_column!r} is not a feature")
        self.out = Path(out)
        self.data_dir = self.out / "data"
        self.features = features
        self.shard_size = shard_size
        self.key_column = key_column
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        self._next_index: dict[str, int] = {}
        self.rows_written = 0
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for tmp in [*self.data_dir.glob(".*.tmp"), *self.data_dir.glob("*.parquet.tmp")]:
            tmp.unlink(missing_ok=True)  # left by a kill in the middle of a write (older versions: no leading dot)
        self._done = self._scan()

    def _scan(self) -> set[str]:
        done: set[str] = set()
        for path in sorted(self.data_dir.iterdir()):
            m = SHARD_PATTERN.match(path.name)
            if not m:
                continue
            split, index = m["split"], int(m["index"])
            self._next_index[split] = max(self._next_index.get(split, 0), index + 1)
            try:
                keys = read_parquet(path, columns=[self.key_column]).column(0).to_pylist()
            except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
                raise ShardError(f"{path}: unreadable shard ({type(e).__name__}: {e}); delete it and rerun: its "
                                 "rows are redone") from e
            done.update(keys)
        if done:
            logger.info("resuming: %d rows already written in %s", len(done), self.data_dir)
        return done

    @property
    def done_keys(self) -> frozenset[str]:
        """Keys of rows already committed to disk by earlier runs or earlier flushes."""
        return frozenset(self._done)

    def add(self, row: dict[str, Any], split: str) -> None:
        """Queue one row for ``split``; writes a shard when the split's buffer is full."""
        buffer = self._buffers.setdefault(split, [])
        buffer.append(row)
        if len(buffer) >= self.shard_size:
            self._flush(split)

    def add_many(self, rows: Iterable[dict[str, Any]], split: str) -> None:
        for row in rows:
            self.add(row, split)

    def _flush(self, split: str) -> None:
        import datasets
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()  # a bar per shard from `datasets` would drown the job's own progress bar
        rows = self._buffers.get(split) or []
        if not rows:
            return
        index = self._next_index.get(split, 0)
        final = self.data_dir / f"{split}-{index:05d}.parquet"
        tmp = self.data_dir / f".{final.name}.tmp"  # hidden: `datasets` never reads it as a data file
        try:
            datasets.Dataset.from_list(rows, features=self.features).to_parquet(str(tmp))
            os.replace(tmp, final)
        except BaseException:  # a full disk: no half-written temporary left to fill it further (a kill may)
            tmp.unlink(missing_ok=True)
            raise
        self._next_index[split] = index + 1
        self._done.update(r[self.key_column] for r in rows)
        self.rows_written += len(rows)
        self._buffers[split] = []

    def flush(self) -> None:
        """Write every non-empty buffer as a (possibly short) shard."""
        for split in list(self._buffers):
            self._flush(split)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        # Flush on errors and KeyboardInterrupt too: what was produced is kept.
        self.close()


class SkipLog:
    """Append-only JSON-lines record of items that were skipped, with their reason; resumable.

    Each line is ``{"key": ..., "reason": ..., "detail": ...}``; a key logged by an earlier run is not
    logged twice. `discard_where` forgets entries in memory and `save` writes that to the file in one rewrite.
    A torn last line (a kill or a full disk in the middle of a write) is dropped with a warning
    and the file rewritten without it, so that item is simply tried again; a bad line elsewhere raises
    `ShardError` naming the file and the line.

    The file exists from the moment the log is opened, empty when nothing was skipped, so a script can always
    read it (``wc -l OUT/skipped.jsonl`` is 0, not "No such file").
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.entries: dict[str, dict[str, str]] = {}
        self._dirty = False  # entries were discarded and the file still holds them (see `save`)
        if self.path.exists():
            self._read()
        else:
            self.path.touch()

    def _read(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ShardError(f"{self.path}: unreadable ({e}); delete it and rerun: the skipped items are tried "
                             "again") from e
        numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
        for i, (n, line) in enumerate(numbered):
            try:
                entry = json.loads(line)
                key = entry["key"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                if i == len(numbered) - 1:
                    logger.warning("%s:%d: torn last line dropped (an interrupted write); that item is tried again",
                                   self.path, n)
                    self._rewrite(x for _, x in numbered[:-1])
                    break
                raise ShardError(f"{self.path}:{n}: not a skip record ({e}); delete that line (or the file) and "
                                 "rerun") from e
            self.entries[key] = entry

    def add(self, key: str, reason: str, detail: str = "") -> None:
        if key in self.entries:
            return
        entry = {"key": key, "reason": reason, "detail": detail}
        self.entries[key] = entry
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def discard(self, key: str) -> None:
        """Forget the skip of ``key``, so that the item is tried again; the file changes at `save`."""
        self.discard_where(lambda entry: entry["key"] == key)

    def discard_where(self, predicate: Callable[[dict[str, str]], bool]) -> list[str]:
        """Forget every skip whose record matches ``predicate``; returns their keys.

        Only the entries in memory change: the file is rewritten once, by `save`, however many entries are
        dropped (a rewrite per entry made a rerun quadratic in the number of entries). Until then the file
        keeps the dropped records, so a kill in between leaves the log of the last complete run (plus what
        was appended since): the next run decides again. A key logged again after its discard is appended,
        and the later line wins when the file is read.
        """
        keys = [k for k, entry in self.entries.items() if predicate(entry)]
        for key in keys:
            del self.entries[key]
        self._dirty = self._dirty or bool(keys)
        return keys

    def save(self) -> None:
        """Write the discards to the file (one atomic rewrite), if there were any since it was last written."""
        if self._dirty:
            self._rewrite(json.dumps(e) for e in self.entries.values())
            self._dirty = False

    def _rewrite(self, lines: Iterable[str]) -> None:
        """Replace the file by ``lines`` atomically (`write_text_atomic`)."""
        write_text_atomic(self.path, "".join(line + "\n" for line in lines))

    def reasons(self) -> dict[str, int]:
        """Number of skipped items per reason."""
        counts: dict[str, int] = {}
        for entry in self.entries.values():
            counts[entry["reason"]] = counts.get(entry["reason"], 0) + 1
        return dict(sorted(counts.items()))


def shard_splits(folder: str | Path) -> list[str]:
    """Split names present in a shard folder, in the order train, dev, test, then others."""
    names = {m["split"] for p in (Path(folder) / "data").glob("*.parquet") if (m := SHARD_PATTERN.match(p.name))}
    order = {"train": 0, "dev": 1, "validation": 1, "test": 2}
    return sorted(names, key=lambda s: (order.get(s, 3), s))
