"""The two evaluation flows of ``ifas-eval``: score files, and checkpoints on a protocol; and their outputs.

Outputs in ``--out`` (checkpoint flow; the score-file flow writes the same tables when ``--out`` is given):

* ``scores/<setting>/<checkpoint>/<test set>.csv``: per-frame score files (`ifas_eval.scorefile` format),
  with ``scored_with.json`` (the checkpoint's file hashes, dtype, normalisation: reuse only when they match);
* ``results.md``, ``results.csv``, ``results.json``: the paper-style table (FLIP/SSDG), the operating-point
  table (fixed threshold, ISO/IEC 30107-3), and every per-checkpoint number with its convention;
* ``run.json``: the resolved run (protocol, data, checkpoints, threshold, software versions), written with the
  tables as one set (`write_tables`: all four files are current, or none was replaced);
* ``report/``: curves, histograms, per-attack-type errors and the explanation page (`ifas_eval.report`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # pragma: no cover
    from ifas_eval.exclusion import ExclusionList

logger = logging.getLogger(__name__)


@dataclass
class Scored:
    """One scored test set of one checkpoint, with its metrics."""

    setting: Setting | None
    checkpoint: str
    seed_index: int
    """The checkpoint's position among those of its setting on the command line (0, 1, ...), not a seed."""
    scores: ScoreSet
    result: dict[str, Any]
    rows: Any = None  # the benchmark rows (datasets.Dataset), for the explanation gallery
    seed: int | None = None
    """The checkpoint's training seed (`ifas_eval.scoring.training_seed`), None when unknown."""


@dataclass
class CheckpointPlan:
    """Which checkpoints evaluate which setting: ``{setting name: [checkpoint, ...]}``.

    ``seen_domain`` holds the ``(setting, checkpoint)`` pairs where the checkpoint also evaluates another
    setting whose training sources include this setting's test sources: unless it was trained for this very
    setting, it has seen the test domain (rows marked "(seen domain)").
    """

    per_setting: dict[str, list[str]] = field(default_factory=dict)
    seen_domain: set[tuple[str, str]] = field(default_factory=set)


def plan_checkpoints(protocol: Protocol, specs: Sequence[str], only: Sequence[str] = (),
                     shared_checkpoint: bool = False) -> CheckpointPlan:
    """Map ``--checkpoint`` values to settings.

    ``SETTING=CKPT`` evaluates CKPT on that setting's test sets; a plain ``CKPT`` evaluates every setting
    that has no ``SETTING=`` checkpoint. Repeating either form gives several checkpoints (seeds), reported as
    mean ± std. ``only`` restricts the settings.

    A checkpoint evaluated on two settings where one trains on the other's test sources (leave-one-out:
    ``mcio``, ``sample``) has seen the test domain of all but at most one of them. That is refused unless
    ``shared_checkpoint`` is set; then the affected rows are recorded in `CheckpointPlan.seen_domain` and
    marked "(seen domain)" in the tables.

    Raises:
        ValueError: unknown setting name, no checkpoint for any selected setting, or a checkpoint shared by
            settings it has seen the test domain of (without ``shared_checkpoint``).
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
    plan.seen_domain = _seen_domain(protocol, plan.per_setting)
    if plan.seen_domain and not shared_checkpoint:
        ckpt = sorted({c for _, c in plan.seen_domain})[0]
        settings = [s for s in plan.per_setting if ckpt in plan.per_setting[s]]
        raise ValueError(f"--checkpoint {ckpt} is evaluated on settings {', '.join(settings)} of {protocol.name}, "
                         "and each of them trains on another's test domain (leave-one-out): give one checkpoint "
                         f"per setting (--checkpoint {settings[0]}=CKPT ...), or pass --shared-checkpoint to "
                         "evaluate it anyway (rows marked '(seen domain)')")
    return plan


def _seen_domain(protocol: Protocol, per_setting: dict[str, list[str]]) -> set[tuple[str, str]]:
    settings = {s.name: s for s in protocol.settings}
    seen = set()
    for name, ckpts in per_setting.items():
        test_sources = {p.source for t in settings[name].tests for p in t.parts}
        for ckpt in ckpts:
            for other, other_ckpts in per_setting.items():
                if other != name and ckpt in other_ckpts and test_sources & {s.source for s in settings[other].train}:
                    seen.add((name, ckpt))
    return seen


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
        result.update({"setting": "", "checkpoint": str(path), "seed_index": 0, "seed": None})
        out.append(Scored(None, str(path), 0, ss, result))
    return out


def evaluate_protocol(protocol: Protocol, plan: CheckpointPlan, *, data: str | None, out: Path,
                      batch_size: int = 32, threshold: float | None = None, device: str = "auto",
                      dtype: str = "auto", test_sets: Sequence[str] = (), normalize: str = "vocab",
                      exclusions: Sequence[ExclusionList] = (), skip_corrupt: bool = False,
                      on_inputs_checked: Callable[[], None] | None = None) -> list[Scored]:
    """Score every planned checkpoint on its setting's test sets and compute the metrics.

    The operating threshold (fixed-threshold HTER, ISO metrics) is ``threshold`` when given, else the
    FLIP/SSDG EER threshold of the setting's ``dev`` sets when the protocol defines them (scored like a test
    set), else 0.5.

    Args:
        exclusions: video lists (`ifas_eval.exclusion`) whose videos are left out of every test set (not of
            dev sets) before scoring; each result records how many videos each list removed
            (``excluded_videos``). A list that removes nothing from any test set is warned about.
        skip_corrupt: leave rows whose image does not decode out of the test and dev sets, counted per test
            set (``skipped_corrupt``); without it a corrupt image stops the run with a message naming its
            dataset, split, row and path.
        on_inputs_checked: called once the benchmark, its test sets and the exclusion lists have been found
            and checked, before any checkpoint loads (``ifas-eval`` writes ``run.json`` later, with the
            tables: `write_tables`).

    No lock is taken here: ``ifas-eval`` holds ``scf.locking.output_lock(out)`` around this call and
    `write_tables`; a Python caller whose ``out`` other processes may write should do the same.
    """
    from ifas_eval.exclusion import exclusion_fingerprint
    from ifas_eval.scoring import (
        SCORE_RECORD,
        checkpoint_tag,
        load_benchmark,
        load_checkpoint,
        prepare_score_folder,
        read_score_record,
        safe_name,
        score_folder_for,
        score_record,
        score_test_set,
        throughput_progress,
        training_seed,
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
        rows = {t.name: data_obj.select_rows(t.parts, f"test set {t.name!r}") for t in tests}
        dev_rows = (data_obj.select_rows(setting.dev, f"dev set of setting {setting.name!r}") if setting.dev
                    else None)
        jobs.append((setting, tests, rows, dev_rows))
    if test_sets and not jobs:
        raise ValueError(f"no test set named {', '.join(test_sets)} in the selected settings")
    notes: dict[tuple[str, str], dict[str, Any]] = {}
    check_test_sizes(jobs, notes)
    if exclusions:
        _apply_exclusions(jobs, exclusions, notes)
    if on_inputs_checked is not None:
        on_inputs_checked()
    for setting, _, _, _ in jobs:
        for ckpt in plan.per_setting[setting.name]:
            if ckpt not in tags:
                tags[ckpt] = checkpoint_tag(ckpt, taken)
    seeds = {ckpt: training_seed(ckpt) for ckpt in tags}
    warn_repeated_seeds({s.name: plan.per_setting[s.name] for s, _, _, _ in jobs}, seeds)
    # score files of another normalisation or exclusion are kept apart; another model's never reused
    excl_fp = exclusion_fingerprint(exclusions) if exclusions else None
    suffix = ("" if normalize == "vocab" else f"-{normalize}") + (f"-x{excl_fp}" if excl_fp else "")
    records: dict[str, dict[str, Any]] = {}
    used_folders: set[Path] = set()
    with throughput_progress() as progress:
        if skip_corrupt:
            for i, (setting, tests, rows, dev_rows) in enumerate(jobs):
                for test in tests:
                    rows[test.name] = _drop_corrupt(rows[test.name], f"{setting.name}/{test.name}", progress,
                                                    notes.setdefault((setting.name, test.name), {}))
                if dev_rows is not None:
                    dev_rows = _drop_corrupt(dev_rows, f"{setting.name} dev", progress, {})
                    jobs[i] = (setting, tests, rows, dev_rows)
        for setting, tests, rows, dev_rows in jobs:
            for seed_index, ckpt in enumerate(plan.per_setting[setting.name]):
                logger.info("setting %s (%s): checkpoint %s", setting.name, setting.label, ckpt)
                model, processor = load_checkpoint(ckpt, device, dtype)
                parent = out / "scores" / safe_name(setting.name)
                # the score files of a folder are reused only if the same weights wrote them (review: a
                # retrained checkpoint at the same path once got the old model's cached scores), and another
                # checkpoint's are never deleted: it gets the next free folder (score_folder_for)
                if ckpt not in records:
                    previous = read_score_record(parent / f"{tags[ckpt]}{suffix}" / SCORE_RECORD)
                    records[ckpt] = score_record(ckpt, model, normalize=normalize, exclusions=excl_fp,
                                                 known=previous)
                folder = score_folder_for(parent, tags[ckpt], suffix, records[ckpt], used_folders)
                prepare_score_folder(folder, records[ckpt])
                thr, source = threshold, None
                if thr is None and dev_rows is not None:
                    dev_set = score_test_set(model, processor, dev_rows, f"{setting.name} dev",
                                             folder / "_dev.csv", batch_size=batch_size, progress=progress,
                                             normalize=normalize)
                    thr, source = dev_threshold(dev_set), f"dev:{setting.name}"
                for test in tests:
                    score_file = folder / f"{safe_name(test.name)}.csv"
                    ss = score_test_set(model, processor, rows[test.name], test.name, score_file,
                                        batch_size=batch_size, progress=progress, normalize=normalize)
                    result = evaluate_score_set(ss, threshold=thr, threshold_source=source)
                    result.update({"setting": setting.name, "setting_label": setting.label, "checkpoint": ckpt,
                                   "score_file": str(score_file), "seed_index": seed_index,
                                   "seed": seeds[ckpt][0], "seed_source": seeds[ckpt][1],
                                   **notes.get((setting.name, test.name), {})})
                    if (setting.name, ckpt) in plan.seen_domain:
                        result["seen_domain"] = True
                    scored.append(Scored(setting, ckpt, seed_index, ss, result, rows[test.name].ds,
                                         seeds[ckpt][0]))
                del model
    return scored


def warn_repeated_seeds(per_setting: dict[str, list[str]],
                        seeds: dict[str, tuple[int | None, str | None]]) -> list[str]:
    """Warn (one line per setting) when checkpoints of one setting share a known training seed.

    Mean ± std over "three seeds" that are one seed three times (the same run given twice, or runs trained with
    the same ``--seed``) understates the spread; the tables are still written. Returns the warnings.

    Args:
        per_setting: ``{setting: [checkpoint, ...]}`` in command-line order.
        seeds: ``{checkpoint: (seed, source file)}`` (`ifas_eval.scoring.training_seed`); unknown seeds
            (None) are never compared.
    """
    lines = []
    for setting, ckpts in per_setting.items():
        by_seed: dict[int, list[str]] = {}
        for ckpt in ckpts:
            seed = seeds.get(ckpt, (None, None))[0]
            if seed is not None:
                by_seed.setdefault(seed, []).append(ckpt)
        repeated = {s: c for s, c in by_seed.items() if len(c) > 1}
        if repeated:
            line = (f"setting {setting}: " + "; ".join(f"checkpoints {', '.join(c)} were all trained with seed {s}"
                                                      for s, c in repeated.items())
                    + ": their mean ± std is not over different seeds")
            logger.warning(line)
            lines.append(line)
    return lines


def count_videos(ds: Any) -> tuple[int, int, int]:
    """Videos, real videos and fake videos of benchmark rows (a video is a (source, video_id) pair)."""
    from ifas_eval.scoring import column_lists

    cols = column_lists(ds, ["video_id", "label", "source"])
    labels: dict[tuple[str, str], int] = {}
    for source, video, label in zip(cols["source"], cols["video_id"], cols["label"], strict=True):
        labels.setdefault((source, video), int(label))
    real = sum(1 for v in labels.values() if v == 1)
    return len(labels), real, len(labels) - real


def check_test_sizes(jobs: list, notes: dict) -> None:
    """Compare each test set's video count (before exclusions) with the protocol's ``expected_*``.

    A difference is logged as one warning line and recorded in ``notes`` (``size_check``: expected and found
    counts), which puts it in ``results.json`` and in a caption line under the tables.
    """
    for setting, tests, rows, _ in jobs:
        for test in tests:
            exp = test.expected
            if exp is None:
                continue
            videos, real, fake = count_videos(rows[test.name].ds)
            if not exp.differs(videos, real, fake):
                continue
            logger.warning("%s/%s: the data holds %d videos (%d real / %d fake) for %s; the protocol expects %s. "
                           "The ingest's splits are probably not the protocol's (docs/evaluation.md, "
                           "'Test-set sizes')", setting.name, test.name, videos, real, fake, test.describe(),
                           exp.describe())
            notes.setdefault((setting.name, test.name), {})["size_check"] = {
                "expected": {"videos": exp.videos, "real": exp.real, "fake": exp.fake},
                "found": {"videos": videos, "real": real, "fake": fake}}


def _apply_exclusions(jobs: list, exclusions: Sequence[ExclusionList], notes: dict) -> None:
    """Leave the listed videos out of every test set of ``jobs`` (in place); warn about lists matching nothing."""
    from ifas_eval.exclusion import exclude_videos
    from ifas_eval.scoring import column_lists

    matched = {lst.label: 0 for lst in exclusions}
    examples: dict[str, str] = {}
    for setting, tests, rows, _ in jobs:
        for test in tests:
            video_ids = column_lists(rows[test.name].ds, ["video_id"])["video_id"]
            keep, counts = exclude_videos(video_ids, exclusions)
            if not keep:
                raise ValueError(f"test set {test.name!r} of setting {setting.name}: --exclude-videos leaves no "
                                 "row")
            for label, n in counts.items():
                matched[label] += n
            if video_ids:
                examples.setdefault("data", video_ids[0])
            logger.info("%s/%s: --exclude-videos removed %d of %d rows (%s)", setting.name, test.name,
                        len(video_ids) - len(keep), len(video_ids),
                        ", ".join(f"{label}: {n} videos" for label, n in counts.items()))
            rows[test.name] = rows[test.name].keep(keep)
            notes.setdefault((setting.name, test.name), {})["excluded_videos"] = counts
    names = sorted({t.name for _, tests, _, _ in jobs for t in tests})
    for lst in exclusions:
        if matched[lst.label] == 0:
            example = "/".join(sorted(lst.keys)[0])
            logger.warning("--exclude-videos %s: none of its %d videos is in the test sets (%s): the video ids "
                           "differ (list: %r, data: %r); FLIP's exact MCIO test sets need a benchmark ingested "
                           "with `scf ingest --source flip-mcio` (docs/evaluation.md)", lst.path, len(lst.keys),
                           ", ".join(names), example, examples.get("data", ""))


def _drop_corrupt(rows: Any, what: str, progress: Any, note: dict[str, Any]) -> Any:
    from ifas_eval.scoring import find_corrupt

    bad = find_corrupt(rows, progress, what)
    note["skipped_corrupt"] = len(bad)
    if bad:
        logger.warning("%s: %d corrupt image(s) skipped (--skip-corrupt), first at %s", what, len(bad),
                       rows.where(bad[0]))
        bad_set = set(bad)
        keep = [i for i in range(len(rows.origins)) if i not in bad_set]
        if not keep:
            raise ValueError(f"{what}: every image is corrupt")
        rows = rows.keep(keep)
    return rows


def write_tables(out: Path, scored: Sequence[Scored], title: str, meta: dict[str, Any],
                 with_setting: bool) -> str:
    """``results.md``, ``results.csv``, ``results.json`` and ``run.json`` (``meta``) in ``out``; returns the
    Markdown.

    The files are written as one set (`ifas_eval.outputs.write_files_together`): each to a hidden temporary
    first, then all renamed into place, so a full disk leaves the previous run's files as they were (never a
    folder holding two runs' files) and no temporary behind.

    Raises:
        ifas_eval.outputs.OutputWriteError: a file could not be written; its message names it and says that
            the previous files are still in place.
    """
    from ifas_eval.tables import (
        OPERATING_COLUMNS,
        aggregate,
        markdown_table,
        results_csv,
        results_json,
        row_notes,
    )

    results = [s.result for s in scored]
    out.mkdir(parents=True, exist_ok=True)
    thr_note = _threshold_note(results)
    main = aggregate(results)
    md = "\n".join([
        f"# {title}", "",
        markdown_table(main, "Cross-domain results (FLIP/SSDG convention)", with_setting=with_setting,
                       extra_caption=row_notes(main)),
        markdown_table(aggregate(results, OPERATING_COLUMNS), "At the operating threshold", OPERATING_COLUMNS,
                       (FIXED_CONVENTION, ISO_CONVENTION), with_setting=with_setting, extra_caption=thr_note),
    ])
    from ifas_eval.outputs import write_files_together

    files = {out / "results.md": md, out / "results.csv": results_csv(results),
             out / "results.json": results_json(results, meta), out / "run.json": json.dumps(meta, indent=2)}
    names = [p.name for p in files]
    write_files_together(files, ", ".join(names[:-1]) + " and " + names[-1])
    return md


def _threshold_note(results: Sequence[dict[str, Any]]) -> str:
    sources = sorted({f"{r['fixed_threshold']['threshold']:.4g} ({r['fixed_threshold']['threshold_source']})"
                      for r in results})
    return "Operating threshold: " + ", ".join(sources) + "."


def print_tables(scored: Sequence[Scored], title: str, with_setting: bool) -> None:
    """The paper-style table and the operating-point table on the console (rich)."""
    from rich.console import Console

    from ifas_eval.tables import OPERATING_COLUMNS, aggregate, rich_table, row_notes

    results = [s.result for s in scored]
    console = Console(width=None if sys.stdout.isatty() else 200)  # pipes and files: no truncated columns
    main = aggregate(results)
    console.print(rich_table(main, title, with_setting=with_setting, extra_caption=row_notes(main)))
    console.print(rich_table(aggregate(results, OPERATING_COLUMNS), "At the operating threshold",
                             OPERATING_COLUMNS, (FIXED_CONVENTION, ISO_CONVENTION), with_setting=with_setting,
                             extra_caption=_threshold_note(results)))


def write_report(report_dir: Path, scored: Sequence[Scored], title: str, *, explain: int = 0,
                 max_new_tokens: int = 40, device: str = "auto", dtype: str = "auto",
                 normalize: str = "vocab") -> Path:
    """The report folder (`ifas_eval.report`): curves per test set, attack-type table, HTML page.

    With ``explain > 0`` and checkpoint results, the first checkpoint of each setting explains up to
    ``explain`` wrong and ``explain`` right frames of each of its test sets.

    Raises:
        ifas_eval.outputs.OutputWriteError: a file (or folder) under ``report_dir`` could not be written (a full
            disk); named in the message. The text files are each written whole (temporary + rename).
        ifas_eval.outputs.ReportInputError: something the report reads could not be read (``--explain``: the
            checkpoint, the benchmark rows: an I/O error on the datasets cache, an unreachable Hub); named in
            the message, never called a write failure.
    """
    from ifas_eval.outputs import OutputWriteError, ReportInputError

    note = "the report is incomplete; the tables written before it (results.*, run.json) are this run's"
    try:
        return _write_report(report_dir, scored, title, explain=explain, max_new_tokens=max_new_tokens,
                             device=device, dtype=dtype, normalize=normalize)
    except OutputWriteError as e:  # only the writes under report_dir are wrapped as such (`writing`)
        e.note = e.note or note
        raise
    except OSError as e:  # anything else is a read: the checkpoint, the benchmark's images, the Hub
        raise ReportInputError(e, "the report (--explain)" if explain > 0 else "the report", note) from e


def _write_report(report_dir: Path, scored: Sequence[Scored], title: str, *, explain: int,
                  max_new_tokens: int, device: str, dtype: str, normalize: str) -> Path:
    from ifas_eval import report
    from ifas_eval.outputs import writing
    from ifas_eval.tables import MAIN_COLUMNS, aggregate, markdown_table

    with writing(report_dir):
        report_dir.mkdir(parents=True, exist_ok=True)
    results = [s.result for s in scored]
    figures = []
    by_test: dict[tuple[str, str], list[Scored]] = {}
    for s in scored:
        by_test.setdefault((s.result["setting"], s.result["test_set"]), []).append(s)
    for (setting, test), items in by_test.items():
        name = f"{setting} {test}".strip() if setting and setting != test else test
        curves = [(_curve_label(s) if len(items) > 1 else test, s.scores) for s in items]
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


def _curve_label(s: Scored) -> str:
    """A curve's legend when a test set has several checkpoints: the training seed when known, else the
    checkpoint's position (``#0``, ``#1``: ``seed_index``), then the checkpoint's last two path parts."""
    who = f"seed {s.seed}" if s.seed is not None else f"#{s.seed_index} (seed unknown)"
    return f"{who}: {Path(s.checkpoint).parent.name}/{Path(s.checkpoint).name}"


def _row_images(rows: Any, idx: Sequence[int]) -> list[Any]:
    from PIL import Image

    from scf.imaging import to_rgb

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
    """The resolved run description written to ``run.json`` and into ``results.json``.

    ``versions`` (`scf.schema.software_versions`: Python, the three toolkit distributions, torch,
    transformers, datasets) records which code produced the numbers. It is provenance only: a rerun into the
    same ``--out`` under other versions reuses the score files all the same (they are keyed by the
    checkpoint's files and the scoring settings, `ifas_eval.scoring.score_record`), and records its own
    versions.
    """
    from scf.schema import software_versions

    meta = {"default_threshold": DEFAULT_THRESHOLD, "primary_convention": FLIP_CONVENTION, **kwargs,
            "versions": software_versions()}
    return json.loads(json.dumps(meta, default=str))
