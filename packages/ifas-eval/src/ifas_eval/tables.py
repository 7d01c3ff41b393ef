"""Result tables: per-test-set metrics aggregated over checkpoints (mean ± std), as rich, Markdown, CSV and JSON.

A *result* is the dict of `ifas_eval.metrics.evaluate_score_set` plus ``setting``, ``checkpoint``,
``seed_index`` (the position of the checkpoint among those of its setting on the command line, not a seed) and
``seed`` (the checkpoint's training seed, `ifas_eval.scoring.training_seed`; None when unknown). Rows of the paper-style table
are test sets; numbers are percentages. With several checkpoints per setting (seeds) a cell is
``mean ± std`` with the sample standard deviation (ddof = 1). The "Average" row first averages the test
sets of each seed index, then takes mean ± std over seed indices (the paper's "mean of three seeds").
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ifas_eval.metrics import CONVENTION_CAPTIONS, FIXED_CONVENTION, FLIP_CONVENTION, ISO_CONVENTION

logger = logging.getLogger(__name__)

Getter = Callable[[dict[str, Any]], float]

MAIN_COLUMNS: tuple[tuple[str, Getter], ...] = (
    ("HTER (%)", lambda r: r["hter"]),
    ("AUC (%)", lambda r: r["auc"]),
    ("TPR@FPR=1% (%)", lambda r: r["tpr_at_fpr_1pct"]),
)
OPERATING_COLUMNS: tuple[tuple[str, Getter], ...] = (
    ("HTER@thr (%)", lambda r: r["fixed_threshold"]["hter"]),
    ("APCER max (%)", lambda r: r["iso"]["apcer"]),
    ("BPCER (%)", lambda r: r["iso"]["bpcer"]),
    ("ACER (%)", lambda r: r["iso"]["acer"]),
    ("BPCER@APCER=5% (%)", lambda r: r["iso"]["bpcer_at_apcer"]["5%"]["bpcer"]),
)


def _key(r: dict[str, Any]) -> tuple[str, str]:
    return (r.get("setting", ""), r["test_set"])


def group_rows(results: Sequence[dict[str, Any]]) -> list[tuple[tuple[str, str], list[dict[str, Any]]]]:
    """Results grouped by (setting, test set) in first-seen order, each group sorted by seed index."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(_key(r), []).append(r)
    return [(k, sorted(v, key=lambda r: r.get("seed_index", 0))) for k, v in groups.items()]


SEEN_DOMAIN = "(seen domain)"
"""Label suffix of rows whose checkpoint also evaluates a setting that trains on this row's test domain."""


def _where(row: dict[str, Any]) -> str:
    """A table row named in a caption note: ``setting/test set``, or the test set when the setting is the same."""
    if row["setting"] and row["setting"] != row["test_set"]:
        return f"{row['setting']}/{row['test_set']}"
    return row["test_set"]


def row_notes(agg: dict[str, Any]) -> str:
    """Caption text for what changed a table's test sets: seen domains, excluded videos, sizes, skipped images."""
    notes = []
    if any(SEEN_DOMAIN in str(r["label"]) for r in agg["rows"]):
        notes.append(f"{SEEN_DOMAIN}: the checkpoint is shared with a setting that trains on this test domain "
                     "(--shared-checkpoint), so it has seen it unless it was trained for this very setting.")
    excluded = [r for r in agg["rows"] if "excluded_videos" in r]
    if excluded:
        notes.append("Videos excluded (--exclude-videos): " + "; ".join(
            f"{_where(r)}: " + ", ".join(f"{name} {n}" for name, n in r["excluded_videos"].items())
            for r in excluded) + ".")
    sized = [r for r in agg["rows"] if "size_check" in r]
    if sized:
        notes.append("Test-set size differs from the protocol's expected size (before --exclude-videos): "
                     + "; ".join(f"{_where(r)} {r['size_check']['found']['videos']} videos "
                                 f"(expected {r['size_check']['expected']['videos']})" for r in sized) + ".")
    skipped = [r for r in agg["rows"] if r.get("skipped_corrupt")]  # test sets that had any
    if skipped:
        notes.append("Corrupt images skipped (--skip-corrupt): " + "; ".join(
            f"{_where(r)} {r['skipped_corrupt']}" for r in skipped) + ".")
    return " ".join(notes)


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    arr = np.asarray(values, dtype=np.float64) * 100.0
    return float(arr.mean()), (float(arr.std(ddof=1)) if arr.size > 1 else None)


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def aggregate(results: Sequence[dict[str, Any]], columns: Sequence[tuple[str, Getter]] = MAIN_COLUMNS,
              ) -> dict[str, Any]:
    """Mean ± std (percent) per (setting, test set) and the average row.

    The average row is, per seed (checkpoint index), the mean over the rows, then mean ± std over the seeds
    (the paper's convention). When the rows have different numbers of checkpoints (a seed failed or is still
    running) it is not computed: its cells are None (printed "n/a"), ``n_seeds`` is None and ``note`` says
    why (the tables print the note under the caption).

    Returns:
        ``{"rows": [{"setting", "test_set", "label", "n_checkpoints", "n_real", "n_fake", <column>: {"mean",
        "std"}}], "average": {<column>: {"mean", "std"}, "n_seeds", "note" (only when n/a)}}``.
    """
    groups = group_rows(results)
    rows = []
    for (setting, test_set), rs in groups:
        label = rs[0].get("setting_label", setting)
        if any(r.get("seen_domain") for r in rs):
            label = f"{label} {SEEN_DOMAIN}"
        row: dict[str, Any] = {"setting": setting, "test_set": test_set, "label": label,
                               "n_checkpoints": len(rs), "n_real": rs[0]["n_real"], "n_fake": rs[0]["n_fake"]}
        for extra in ("excluded_videos", "skipped_corrupt", "size_check"):
            if extra in rs[0]:
                row[extra] = rs[0][extra]
        for name, get in columns:
            mean, std = _mean_std([get(r) for r in rs])
            row[name] = {"mean": mean, "std": std}
        rows.append(row)
    counts = [len(rs) for _, rs in groups]
    if groups and len(set(counts)) > 1:
        # The Average row is the mean over test sets per seed, then mean ± std over seeds: with different
        # numbers of checkpoints it has no meaning (a subset of the seeds would silently differ from the mean
        # of the rows above), so it is not computed; the note says why, in every format.
        shown = ", ".join(f"{row['label']} on {row['test_set']}: {n}" for row, n in zip(rows, counts, strict=True))
        note = (f"Average: n/a, the settings have different numbers of checkpoints ({shown}); evaluate the "
                "same number of seeds for every setting to get an Average.")
        logger.warning("%s", note)
        average: dict[str, Any] = {"n_seeds": None, "note": note}
        for name, _ in columns:
            average[name] = {"mean": None, "std": None}
        return {"rows": rows, "average": average}
    n_seeds = counts[0] if groups else 0
    average = {"n_seeds": n_seeds}
    for name, get in columns:
        per_seed = [np.mean([get(rs[k]) for _, rs in groups]) for k in range(n_seeds)]
        mean, std = _mean_std(per_seed) if per_seed else (float("nan"), None)
        average[name] = {"mean": mean, "std": std}
    return {"rows": rows, "average": average}


def _table_cells(agg: dict[str, Any], columns: Sequence[tuple[str, Getter]], with_setting: bool,
                 ) -> tuple[list[str], list[list[str]]]:
    header = (["Setting"] if with_setting else []) + ["Test set", "Real / fake"] + [c for c, _ in columns]
    body = []
    for row in agg["rows"]:
        cells = ([row["label"]] if with_setting else []) + [row["test_set"], f"{row['n_real']} / {row['n_fake']}"]
        cells += [_fmt(row[c]["mean"], row[c]["std"]) for c, _ in columns]
        body.append(cells)
    if len(agg["rows"]) > 1:
        avg = agg["average"]
        body.append((["Average"] if with_setting else []) + (["", ""] if with_setting else ["Average", ""])
                    + [_fmt(avg[c]["mean"], avg[c]["std"]) for c, _ in columns])
    return header, body


def _with_note(agg: dict[str, Any], extra_caption: str) -> str:
    """The caption's extra text plus the average row's note (why it is n/a), when there is one."""
    note = agg["average"].get("note") if len(agg["rows"]) > 1 else None
    return f"{extra_caption} {note}".strip() if note else extra_caption


def caption(conventions: Sequence[str], extra: str = "") -> str:
    """The caption naming the conventions a table's numbers follow."""
    text = " ".join(f"[{c}] {CONVENTION_CAPTIONS[c]}" for c in conventions)
    return f"{text} {extra}".strip()


def rich_table(agg: dict[str, Any], title: str, columns: Sequence[tuple[str, Getter]] = MAIN_COLUMNS,
               conventions: Sequence[str] = (FLIP_CONVENTION,), with_setting: bool = True,
               extra_caption: str = "") -> Any:
    """A `rich.table.Table` of an aggregate, captioned with its conventions."""
    from rich.markup import escape
    from rich.table import Table

    extra_caption = _with_note(agg, extra_caption)
    header, body = _table_cells(agg, columns, with_setting)
    table = Table(title=escape(title), caption=escape(caption(conventions, extra_caption)), caption_justify="left")
    for i, h in enumerate(header):
        table.add_column(escape(h), justify="right" if i >= len(header) - len(columns) else "left")
    for i, cells in enumerate(body):
        table.add_row(*(escape(c) for c in cells), style="bold" if i == len(body) - 1 and cells[0] == "Average" else None)
    return table


def markdown_table(agg: dict[str, Any], title: str, columns: Sequence[tuple[str, Getter]] = MAIN_COLUMNS,
                   conventions: Sequence[str] = (FLIP_CONVENTION,), with_setting: bool = True,
                   extra_caption: str = "") -> str:
    """The same table in Markdown, with its caption under it."""
    extra_caption = _with_note(agg, extra_caption)
    header, body = _table_cells(agg, columns, with_setting)
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
    lines += ["", f"*{caption(conventions, extra_caption)}*", ""]
    return "\n".join(lines)


def results_csv(results: Sequence[dict[str, Any]]) -> str:
    """Long-format CSV: one line per (setting, test set, checkpoint) with every scalar metric (fractions).

    ``seed_index`` is the checkpoint's position among its setting's checkpoints; ``seed`` its training seed,
    empty when unknown.
    """
    fields = ["setting", "test_set", "checkpoint", "seed_index", "seed", "n_real", "n_fake", "n_frames", "auc",
              "eer", "hter", "threshold", "tpr_at_fpr_1pct", "fixed_threshold", "threshold_source", "hter_at_threshold",
              "apcer_max", "apcer_max_type", "bpcer", "acer", "bpcer_at_apcer_1pct", "bpcer_at_apcer_5pct",
              "bpcer_at_apcer_10pct", "excluded_videos", "skipped_corrupt", "seen_domain"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(fields)
    for r in results:
        iso, fixed = r["iso"], r["fixed_threshold"]
        writer.writerow([r.get("setting", ""), r["test_set"], r.get("checkpoint", ""), r.get("seed_index", 0),
                         "" if r.get("seed") is None else r["seed"], r["n_real"], r["n_fake"], r["n_frames"], r["auc"], r["eer"], r["hter"], r["threshold"],
                         r["tpr_at_fpr_1pct"], fixed["threshold"], fixed["threshold_source"], fixed["hter"],
                         iso["apcer"], iso["apcer_type"], iso["bpcer"], iso["acer"],
                         iso["bpcer_at_apcer"]["1%"]["bpcer"], iso["bpcer_at_apcer"]["5%"]["bpcer"],
                         iso["bpcer_at_apcer"]["10%"]["bpcer"],
                         sum(r["excluded_videos"].values()) if "excluded_videos" in r else "",
                         r.get("skipped_corrupt", ""), int(bool(r.get("seen_domain")))])
    return buf.getvalue()


def results_json(results: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Everything as one JSON document: run metadata, per-checkpoint results and the aggregates."""
    doc = {
        **meta,
        "conventions": {c: CONVENTION_CAPTIONS[c] for c in (FLIP_CONVENTION, FIXED_CONVENTION, ISO_CONVENTION)},
        "results": list(results),
        "table": aggregate(results, MAIN_COLUMNS),
        "operating_point_table": aggregate(results, OPERATING_COLUMNS),
    }
    return json.dumps(doc, indent=2, default=float)


def attack_type_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Error table per attack type at the operating threshold: one line per (test set, checkpoint, type)."""
    rows = []
    for r in results:
        iso = r["iso"]
        for attack, apcer in iso["apcer_per_type"].items():
            rows.append([r.get("setting", ""), r["test_set"], r.get("checkpoint", ""), attack,
                         str(iso["n_per_type"].get(attack, 0)), f"{apcer * 100:.2f}", f"{iso['threshold']:.4g}"])
        rows.append([r.get("setting", ""), r["test_set"], r.get("checkpoint", ""), "live (BPCER)",
                     str(iso["n_per_type"].get("live", 0)), f"{iso['bpcer'] * 100:.2f}", f"{iso['threshold']:.4g}"])
    return rows


ATTACK_TABLE_HEADER = ["Setting", "Test set", "Checkpoint", "Attack type", "Videos", "Error (%)", "Threshold"]
ATTACK_TABLE_CAPTION = (f"[{ISO_CONVENTION}] APCER per attack type (attacks accepted, score >= threshold) and "
                        "BPCER of the live class (bona fide rejected, score < threshold), video level.")
