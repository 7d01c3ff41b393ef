"""The two evaluation flows of ``ifas-eval``: score files, and checkpoints on a protocol; and their outputs.

Outputs in ``--out`` (checkpoint flow; the score-file flow writes the same tables when ``--out`` is given):

* ``scores/<setting>/<checkpoint>/<test set>.csv``: per-frame score files (`ifas_eval.scorefile` format);
* ``results.md``, ``results.csv``, ``results.json``: the paper-style table (FLIP/SSDG), the operating-point
  table (fixed threshold, ISO/IEC 30107-3), and every per-checkpoint number with its convention;
* ``run.json``: the resolved run (protocol, data, checkpoints, threshold);
* ``report/``: curves, histograms, per-attack-type errors and the explanation page (`ifas_eval.report`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ifas_eval.metrics import (
    DEFAULT_THRESHOLD,
    FIXED_CONVENTION,
    FLIP_CONVENTION,
    ISO_CONVENTION,
    ScoreSet,
    dev_threshold,
    evaluate_score_set,
)
from ifas_eval.protocols import Protocol, Setting

logger = logging.getLogger(__name__)


@dataclass
class Scored:
    """One scored test set of one checkpoint, with its metrics."""

    setting: Setting | None
    checkpoint: str
    seed_index: int
    scores: ScoreSet
    result: dict[str, Any]
    rows: Any = None  # the benchmark rows (datasets.Dataset), for the explanation gallery


@dataclass
class CheckpointPlan:
    """Which checkpoints evaluate which setting: ``{setting name: [checkpoint, ...]}``."""

    per_setting: dict[str, list[str]] = field(default_factory=dict)


def plan_checkpoints(protocol: Protocol, specs: Sequence[str], only: Sequence[str] = ()) -> CheckpointPlan:
    """Map ``--checkpoint`` values to settings.

    ``SETTING=CKPT`` evaluates CKPT on that setting's test sets; a plain ``CKPT`` evaluates every setting
    that has no ``SETTING=`` checkpoint. Repeating either form gives several checkpoints (seeds), reported as
    mean ± std. ``only`` restricts the settings.

    Raises:
        ValueError: unknown setting name, or no checkpoint for any selected setting.
    """
    names = [s.name for s in protocol.settings]
    for o in only:
        if o not in names:
            raise ValueError(f"protocol {protocol.name!r} has no setting {o!r}; settings: {', '.join(names)}")
    mapped: dict[str, list[str]] = {}
    plain: list[str] = []
    for spec in specs:
        key, sep, value = spec.partition("=")
        if sep and key in names:
            mapped.setdefault(key, []).append(value)
        elif sep and key and "/" not in key and not Path(spec).exists():
            raise ValueError(f"--checkpoint {spec}: protocol {protocol.name!r} has no setting {key!r}; settings: "
                             f"{', '.join(names)}")
        else:
            plain.append(spec)
    plan = CheckpointPlan()
    for name in names:
        if only and name not in only:
            continue
        ckpts = mapped.get(name) or plain
        if ckpts:
            plan.per_setting[name] = list(ckpts)
        else:
            logger.warning("setting %s has no checkpoint: skipped", name)
    if not plan.per_setting:
        raise ValueError("no checkpoint for any setting of the protocol")
    if plain and len(names) > 1 and not mapped:
        logger.warning("one checkpoint set is evaluated on every setting of %s; a leave-one-out protocol "
                       "normally has one checkpoint per setting (--checkpoint SETTING=CKPT)", protocol.name)
    return plan


def evaluate_score_files(named: Sequence[tuple[str, str]], *, threshold: float | None = None,
                         dev: str | None = None) -> list[Scored]:
    """Metrics of score files, all under the same conventions.

    Args:
        named: ``(name, path)`` pairs.
        threshold: fixed operating threshold (else from ``dev``, else 0.5).
        dev: a dev score file whose FLIP/SSDG EER threshold becomes the operating threshold.
    """
    from ifas_eval.scorefile import read_scores

    source = None
    if threshold is None and dev:
        dev_set = read_scores(dev, Path(dev).stem)
        threshold, source = dev_threshold(dev_set), f"dev:{dev}"
    out = []
    for name, path in named:
        ss = read_scores(path, name)
        result = evaluate_score_set(ss, threshold=threshold, threshold_source=source)
        result.update({"setting": "", "checkpoint": str(path), "seed_index": 0})
        out.append(Scored(None, str(path), 0, ss, result))
    return out


def evaluate_protocol(protocol: Protocol, plan: CheckpointPlan, *, data: str | None, out: Path,
                      batch_size: int = 32, threshold: float | None = None, device: str = "auto",
                      dtype: str = "auto", test_sets: Sequence[str] = (), normalize: str = "vocab",
                      ) -> list[Scored]:
    """Score every planned checkpoint on its setting's test sets and compute the metrics.

    The operating threshold (fixed-threshold HTER, ISO metrics) is ``threshold`` when given, else the
    FLIP/SSDG EER threshold of the setting's ``dev`` sets when the protocol defines them (scored like a test
    set), else 0.5.
    """
    from ifas_eval.scoring import (
        checkpoint_tag,
        load_benchmark,
        load_checkpoint,
        safe_name,
        score_test_set,
        throughput_progress,
    )

    data_obj = load_benchmark(data, protocol, protocol.sources())
    scored: list[Scored] = []
    tags: dict[str, str] = {}
    taken: set[str] = set()
    jobs = []
    for setting in protocol.settings:
        if setting.name not in plan.per_setting:
            continue
        tests = [t for t in setting.tests if not test_sets or t.name in test_sets]
        if not tests:
            continue
        rows = {t.name: data_obj.select(t.parts, f"test set {t.name!r}") for t in tests}
        dev_rows = data_obj.select(setting.dev, f"dev set of setting {setting.name!r}") if setting.dev else None
        jobs.append((setting, tests, rows, dev_rows))
    if test_sets and not jobs:
        raise ValueError(f"no test set named {', '.join(test_sets)} in the selected settings")
    for setting, _, _, _ in jobs:
        for ckpt in plan.per_setting[setting.name]:
            if ckpt not in tags:
                tags[ckpt] = checkpoint_tag(ckpt, taken)
    with throughput_progress() as progress:
        for setting, tests, rows, dev_rows in jobs:
            for seed_index, ckpt in enumerate(plan.per_setting[setting.name]):
                logger.info("setting %s (%s): checkpoint %s", setting.name, setting.label, ckpt)
                model, processor = load_checkpoint(ckpt, device, dtype)
                # score files of the other normalisation must never be reused by a resume
                suffix = "" if normalize == "vocab" else f"-{normalize}"
                folder = out / "scores" / safe_name(setting.name) / f"{tags[ckpt]}{suffix}"
                thr, source = threshold, None
                if thr is None and dev_rows is not None:
                    dev_set = score_test_set(model, processor, dev_rows, f"{setting.name} dev",
                                             folder / "_dev.csv", batch_size=batch_size, progress=progress,
                                             normalize=normalize)
                    thr, source = dev_threshold(dev_set), f"dev:{setting.name}"
                for test in tests:
                    ss = score_test_set(model, processor, rows[test.name], test.name,
                                        folder / f"{safe_name(test.name)}.csv", batch_size=batch_size,
                                        progress=progress, normalize=normalize)
                    result = evaluate_score_set(ss, threshold=thr, threshold_source=source)
                    result.update({"setting": setting.name, "setting_label": setting.label, "checkpoint": ckpt,
                                   "seed_index": seed_index})
                    scored.append(Scored(setting, ckpt, seed_index, ss, result, rows[test.name]))
                del model
    return scored


def write_tables(out: Path, scored: Sequence[Scored], title: str, meta: dict[str, Any],
                 with_setting: bool) -> str:
    """``results.md``, ``results.csv``, ``results.json`` in ``out``; returns the Markdown."""
    from ifas_eval.tables import (
        OPERATING_COLUMNS,
        aggregate,
        markdown_table,
        results_csv,
        results_json,
    )

    results = [s.result for s in scored]
    out.mkdir(parents=True, exist_ok=True)
    thr_note = _threshold_note(results)
    md = "\n".join([
        f"# {title}", "",
        markdown_table(aggregate(results), "Cross-domain results (paper convention)", with_setting=with_setting),
        markdown_table(aggregate(results, OPERATING_COLUMNS), "At the operating threshold", OPERATING_COLUMNS,
                       (FIXED_CONVENTION, ISO_CONVENTION), with_setting=with_setting, extra_caption=thr_note),
    ])
    (out / "results.md").write_text(md)
    (out / "results.csv").write_text(results_csv(results))
    (out / "results.json").write_text(results_json(results, meta))
    return md


def _threshold_note(results: Sequence[dict[str, Any]]) -> str:
    sources = sorted({f"{r['fixed_threshold']['threshold']:.4g} ({r['fixed_threshold']['threshold_source']})"
                      for r in results})
    return "Operating threshold: " + ", ".join(sources) + "."


def print_tables(scored: Sequence[Scored], title: str, with_setting: bool) -> None:
    """The paper-style table and the operating-point table on the console (rich)."""
    from rich.console import Console

    from ifas_eval.tables import OPERATING_COLUMNS, aggregate, rich_table

    results = [s.result for s in scored]
    console = Console(width=None if sys.stdout.isatty() else 200)  # pipes and files: no truncated columns
    console.print(rich_table(aggregate(results), title, with_setting=with_setting))
    console.print(rich_table(aggregate(results, OPERATING_COLUMNS), "At the operating threshold",
                             OPERATING_COLUMNS, (FIXED_CONVENTION, ISO_CONVENTION), with_setting=with_setting,
                             extra_caption=_threshold_note(results)))


def write_report(report_dir: Path, scored: Sequence[Scored], title: str, *, explain: int = 0,
                 max_new_tokens: int = 40, device: str = "auto", dtype: str = "auto",
                 normalize: str = "vocab") -> Path:
    """The report folder (`ifas_eval.report`): curves per test set, attack-type table, HTML page.

    With ``explain > 0`` and checkpoint results, the first checkpoint of each setting explains up to
    ``explain`` wrong and ``explain`` right frames of each of its test sets.
    """
    from ifas_eval import report
    from ifas_eval.tables import MAIN_COLUMNS, aggregate, markdown_table

    report_dir.mkdir(parents=True, exist_ok=True)
    results = [s.result for s in scored]
    figures = []
    by_test: dict[tuple[str, str], list[Scored]] = {}
    for s in scored:
        by_test.setdefault((s.result["setting"], s.result["test_set"]), []).append(s)
    for (setting, test), items in by_test.items():
        name = f"{setting} {test}".strip() if setting and setting != test else test
        curves = [(Path(s.checkpoint).name if len(items) > 1 else test, s.scores) for s in items]
        if len(items) > 1:
            curves = [(f"seed {s.seed_index}: {Path(s.checkpoint).parent.name}/{Path(s.checkpoint).name}",
                       s.scores) for s in items]
        figures.append((name, report.plot_curves(report_dir, name, curves)))
    report.write_attack_table(report_dir, results)
    examples: list[report.Example] = []
    if explain > 0:
        from ifas_eval.scoring import load_checkpoint

        firsts = [s for s in scored if s.seed_index == 0 and s.rows is not None]
        loaded: dict[str, Any] = {}
        for s in firsts:
            if s.checkpoint not in loaded:
                loaded.clear()
                loaded[s.checkpoint] = load_checkpoint(s.checkpoint, device, dtype)
            model, processor = loaded[s.checkpoint]
            thr = s.result["fixed_threshold"]["threshold"]
            idx = report.pick_examples(s.scores, thr, explain)
            images = _row_images(s.rows, idx)
            examples += report.explain_examples(model, processor, s.scores, images, idx, report_dir, thr,
                                                max_new_tokens, normalize)
    tables_html = _md_table_to_html(markdown_table(aggregate(results), "Results", MAIN_COLUMNS,
                                                   with_setting=any(r["setting"] for r in results)))
    report.write_html(report_dir, title, tables_html, figures, results, examples)
    return report_dir


def _row_images(rows: Any, idx: Sequence[int]) -> list[Any]:
    from PIL import Image

    from scf.faces import to_rgb

    if not idx:
        return []
    return [Image.fromarray(to_rgb(im)) for im in rows.select(list(idx))["image"]]


def _md_table_to_html(md: str) -> str:
    """Render the simple Markdown tables of `ifas_eval.tables` as HTML (no Markdown dependency)."""
    import html

    out, in_table = [], False
    for line in md.splitlines():
        if line.startswith("### "):
            out.append(f"<h2>{html.escape(line[4:])}</h2>")
        elif line.startswith("|---"):
            continue
        elif line.startswith("| "):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
        else:
            if in_table:
                out.append("</table>")
                in_table = False
            if line.startswith("*") and line.endswith("*"):
                out.append(f"<p class='cap'>{html.escape(line.strip('*'))}</p>")
    if in_table:
        out.append("</table>")
    return "\n".join(out)


def run_meta(**kwargs: Any) -> dict[str, Any]:
    """The resolved run description written to ``run.json`` and into ``results.json``."""
    meta = {"default_threshold": DEFAULT_THRESHOLD, "primary_convention": FLIP_CONVENTION, **kwargs}
    return json.loads(json.dumps(meta, default=str))
