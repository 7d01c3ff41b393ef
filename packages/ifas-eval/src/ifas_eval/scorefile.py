"""Score files: one CSV row per scored frame, ``video_id,label,score`` (+ ``attack_type``, ``frame``, ``path``).

``label`` is 1 for real and 0 for fake, ``score`` is P(real) (`scf.schema` polarity). ``attack_type`` (one of
`scf.schema.ATTACK_TYPES`) enables the per-attack-type ISO/IEC 30107-3 table; ``frame`` and ``path`` are
provenance. Other columns are ignored. Frames that share a ``video_id`` are averaged before the metrics.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path

from ifas_eval.metrics import ScoreSet

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("video_id", "label", "score")
OPTIONAL_COLUMNS = ("attack_type", "frame", "path")
WRITE_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


_LABEL = re.compile(r"[01](\.0*)?")
"""Accepted labels: 0 or 1, also written as a float (``1.0``, as ``pandas.to_csv`` writes an int column that
held a NaN), as the Python API (`ScoreSet`) accepts 0.0 / 1.0."""


class ScoreFileError(ValueError):
    """A score file is malformed; the message names the file, the line and the column."""


def read_scores(path: str | Path, name: str | None = None) -> ScoreSet:
    """Read a score file into a `ScoreSet`.

    Args:
        path: the CSV file.
        name: the test set's name (default: the file's stem).

    The file may start with a UTF-8 byte order mark (Excel's "CSV UTF-8"); labels may be written ``1.0`` /
    ``0.0``; scores and frames must be plain decimal numbers (Python-only forms such as ``0.9_0`` are refused).

    Raises:
        ScoreFileError: missing file or column, label not 0/1, score not a finite number in [0, 1],
            attack type not in the vocabulary (file, line and column named).
    """
    from scf.schema import ATTACK_TYPES

    path = Path(path)
    if not path.is_file():
        raise ScoreFileError(f"{path}: score file not found")
    scores: list[float] = []
    labels: list[int] = []
    videos: list[str] = []
    attacks: list[str] = []
    frames: list[int] = []
    paths: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's "CSV UTF-8" starts with a BOM
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        for column in REQUIRED_COLUMNS:
            if column not in header:
                raise ScoreFileError(f"{path}: missing column '{column}' (header: {','.join(header) or 'empty'}; "
                                     f"needs {','.join(REQUIRED_COLUMNS)})")
        has_attack, has_frame = "attack_type" in header, "frame" in header
        for row in reader:
            line = reader.line_num

            def bad(column: str, message: str, line: int = line) -> ScoreFileError:
                return ScoreFileError(f"{path}, line {line}, column '{column}': {message}")

            video = (row.get("video_id") or "").strip()
            if not video:
                raise bad("video_id", "empty")
            label_text = (row.get("label") or "").strip()
            if not _LABEL.fullmatch(label_text):  # 1.0 / 0.0: pandas writes an int column with a NaN so
                raise bad("label", f"must be 0 (fake) or 1 (real), got {label_text!r}")
            score_text = (row.get("score") or "").strip()
            try:
                if "_" in score_text or not score_text.isascii():  # Python-only forms: 0.9_0, non-ASCII digits
                    raise ValueError(score_text)
                score = float(score_text)
            except ValueError:
                raise bad("score", f"not a number: {score_text!r}") from None
            if not math.isfinite(score) or not 0.0 <= score <= 1.0:
                raise bad("score", f"must be P(real) in [0, 1], got {score_text!r}")
            label = int(float(label_text))
            attack = (row.get("attack_type") or "").strip() if has_attack else ""
            if attack and attack not in ATTACK_TYPES:
                raise bad("attack_type", f"{attack!r} is not one of {', '.join(ATTACK_TYPES)}")
            if attack and (attack == "live") != (label == 1):
                raise bad("attack_type", f"{attack!r} disagrees with label {label} (real rows are 'live')")
            frame_text = (row.get("frame") or "0").strip() if has_frame else "0"
            try:
                if "_" in frame_text or not frame_text.isascii():
                    raise ValueError(frame_text)
                frame = int(frame_text or "0")
            except ValueError:
                raise bad("frame", f"not an integer: {frame_text!r}") from None
            scores.append(score)
            labels.append(label)
            videos.append(video)
            attacks.append(attack or ("live" if label == 1 else ""))
            frames.append(frame)
            paths.append((row.get("path") or "").strip())
    if not scores:
        raise ScoreFileError(f"{path}: no score rows (empty test set)")
    return ScoreSet(name or path.stem, scores, labels, videos, attacks, frames, paths)


def write_header(path: Path) -> None:
    """Start a score file (overwrites); a failed write raises `ifas_eval.outputs.OutputWriteError` naming it."""
    from ifas_eval.outputs import writing

    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerow(WRITE_COLUMNS)


def append_rows(path: Path, rows: Iterable[tuple[str, int, float, str, int, str]]) -> None:
    """Append ``(video_id, label, score, attack_type, frame, path)`` rows and flush (crash-safe progress).

    Scores are written as ``repr(float(score))``, the shortest text that reads back as the same float64, so a
    float32 or float64 score round-trips exactly and the metrics from the file equal those from memory (files
    written before with 8 significant digits still read). Rows end in ``\r\n`` (`csv.writer`'s), as the
    header does. A failed write (a full disk) raises `ifas_eval.outputs.OutputWriteError` naming the file."""
    from ifas_eval.outputs import writing

    with writing(path), path.open("a", newline="") as fh:
        writer = csv.writer(fh)
        for video, label, score, attack, frame, p in rows:
            writer.writerow((video, int(label), repr(float(score)), attack, int(frame), p))
        fh.flush()


def count_rows(path: Path, batch_size: int | None = None) -> int:
    """Number of complete data rows in a score file being written, after cutting its torn tail off.

    A torn last line (a crash or a full disk in the middle of a write) is dropped; with ``batch_size``, the
    rows of an incomplete last batch are dropped too, so that a resumed run scores exactly the batches of an
    uninterrupted run with that batch size (a frame's score can differ by ~1e-7 with the other images of its
    batch). The file is cut with a truncate at the byte offset, never rewritten: nothing needs disk space, the
    kept rows (and their ``\r\n`` line ends) stay byte for byte, and a file that cannot be cut is left whole.
    """
    if not path.exists():
        return 0
    data = path.read_bytes()
    complete = data.count(b"\n")  # whole lines: the header and the complete data rows
    rows = max(0, complete - 1)
    if batch_size:
        rows -= rows % batch_size
    keep_bytes = len(data) if data.endswith(b"\n") else data.rfind(b"\n") + 1  # 0 when not even a header
    for _ in range(complete - 1 - rows if complete else 0):  # walk back over the lines of the incomplete batch
        keep_bytes = data.rfind(b"\n", 0, keep_bytes - 1) + 1
    if keep_bytes < len(data):
        logger.info("%s: resuming after row %d: %s cut off (%d bytes; a crash or a full disk in the middle of a "
                    "write)", path, rows, "a torn last line" if complete - 1 == rows else
                    f"{complete - 1 - rows} row(s) of an incomplete batch of {batch_size}"
                    + (" and a torn last line" if not data.endswith(b"\n") else ""), len(data) - keep_bytes)
        from ifas_eval.outputs import writing

        with writing(path), path.open("r+b") as fh:
            fh.truncate(keep_bytes)
    return rows


def write_scores(path: str | Path, score_set: ScoreSet) -> Path:
    """Write a whole `ScoreSet` as a score file."""
    path = Path(path)
    write_header(path)
    append_rows(path, zip(score_set.video_ids, score_set.labels.tolist(), score_set.scores.tolist(),
                          score_set.attack_types, score_set.frames, score_set.paths, strict=True))
    return path
