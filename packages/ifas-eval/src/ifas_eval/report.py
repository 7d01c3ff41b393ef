"""Evaluation reports: ROC and DET curves, score histograms, per-attack-type errors, and an explanation page.

Written into one folder: ``roc_<test>.png``, ``det_<test>.png``, ``hist_<test>.png`` (matplotlib, Agg
backend, one line per checkpoint), ``attack_types.md`` / ``.csv``, and ``index.html`` that shows all of
them plus, when a model is at hand, a gallery of face crops with the model's generated judgment and
interpretation, right and wrong ones side by side (``images/``).
"""

from __future__ import annotations

import csv
import html
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ifas_eval.metrics import ScoreSet
from ifas_eval.scoring import safe_name
from ifas_eval.tables import ATTACK_TABLE_CAPTION, ATTACK_TABLE_HEADER, attack_type_rows

logger = logging.getLogger(__name__)


@dataclass
class Example:
    """One gallery entry: a face crop with its score and the model's generated answer."""

    image_file: str
    test_set: str
    label: int
    attack_type: str
    p_real: float  # the video's mean score (the one the metrics judge); for an image, its score
    judgment: str
    explanation: str
    correct: bool


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, out: Path, name: str) -> str:
    """Lay out, write ``out/name`` (PNG, 110 dpi) and close ``fig``; returns ``name``.

    The figure is written whole or not at all (a hidden temporary renamed into place, removed when the write
    fails); a failure raises `ifas_eval.outputs.OutputWriteError` naming ``out/name``."""
    import os

    from ifas_eval.outputs import writing

    fig.tight_layout()
    tmp = out / f".{name}.{os.getpid()}.tmp"
    try:
        with writing(out / name):
            fig.savefig(tmp, dpi=110, format="png")
            tmp.replace(out / name)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(fig)
    return name


def plot_curves(out: Path, name: str, curves: Sequence[tuple[str, ScoreSet]]) -> list[str]:
    """ROC, DET and score-histogram PNGs of one test set (video-level scores), one line per checkpoint.

    Returns:
        The written file names.
    """
    from scipy.stats import norm
    from sklearn.metrics import det_curve, roc_auc_score, roc_curve

    plt = _plt()
    stem = safe_name(name)
    files = []

    fig, ax = plt.subplots(figsize=(5, 5))
    for label, ss in curves:
        s, y, _ = ss.videos()
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{label} (AUC {roc_auc_score(y, s) * 100:.2f}%)")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="FPR (attacks accepted)", ylabel="TPR (reals accepted)", title=f"ROC: {name}",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=7)
    files.append(_save(plt, fig, out, f"roc_{stem}.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95])
    eps = 1e-4
    for label, ss in curves:
        s, y, _ = ss.videos()
        # positive class = real: det_curve's "fpr" is attacks accepted (APCER), "fnr" reals rejected (BPCER)
        fpr, fnr, _ = det_curve(y, s)
        # markers: a perfectly separated set is a single point (0%, 0%, drawn at the 0.01% corner)
        ax.plot(norm.ppf(np.clip(fpr, eps, 1 - eps)), norm.ppf(np.clip(fnr, eps, 1 - eps)), marker="o", ms=3,
                label=label)
    ax.set_xticks(norm.ppf(ticks), [f"{t * 100:g}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{t * 100:g}" for t in ticks])
    ax.set(xlabel="APCER (%, attacks accepted)", ylabel="BPCER (%, reals rejected)", title=f"DET: {name}",
           xlim=norm.ppf([eps, 0.99]), ylim=norm.ppf([eps, 0.99]))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7)
    files.append(_save(plt, fig, out, f"det_{stem}.png"))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    label, ss = curves[0]
    s, y, _ = ss.videos()
    bins = np.linspace(0, 1, 41)
    ax.hist(s[y == 1], bins=bins, alpha=0.6, label=f"real ({int((y == 1).sum())})", color="tab:green")
    ax.hist(s[y == 0], bins=bins, alpha=0.6, label=f"fake ({int((y == 0).sum())})", color="tab:red")
    ax.set(xlabel="P(real), video mean", ylabel="videos", title=f"Scores: {name} ({label})")
    ax.legend(fontsize=8)
    files.append(_save(plt, fig, out, f"hist_{stem}.png"))
    return files


def video_means(ss: ScoreSet) -> np.ndarray:
    """Per frame, the mean score of its video: the score the metrics judge (frames of a video are averaged)."""
    ids = np.asarray(ss.video_ids, dtype=object)
    _, inverse = np.unique(ids, return_inverse=True)
    sums = np.bincount(inverse, weights=ss.scores)
    return (sums / np.bincount(inverse))[inverse]


def pick_examples(ss: ScoreSet, threshold: float, per_kind: int) -> list[int]:
    """Frame indices for the gallery: the ``per_kind`` most confident wrong and right judgments, per video.

    Right and wrong are decided as the metrics decide them: on the video's mean score (frames of one video
    are averaged), compared with ``threshold``; "confident" = the video mean far from the threshold. Each
    video is shown once, by its frame most decisive in the direction of the video's judgment (as
    ``ifas-predict`` shows a video), so a frame of a correctly judged video never appears among the wrong
    ones. Images are videos of one frame.
    """
    means = video_means(ss)
    pred_real = means >= threshold
    # one frame per video: the highest-scored frame of a video judged real, the lowest of one judged fake
    video = np.unique(np.asarray(ss.video_ids, dtype=object), return_inverse=True)[1]
    decisive = np.where(pred_real, -ss.scores, ss.scores)
    first: dict[int, int] = {}
    for i in np.lexsort((decisive, video)):  # by video, then most decisive first
        first.setdefault(int(video[i]), int(i))
    shown_idx = np.array(sorted(first.values()), dtype=int)
    correct = pred_real == (ss.labels == 1)
    margin = np.abs(means - threshold)
    wrong_idx = shown_idx[~correct[shown_idx]]
    right_idx = shown_idx[correct[shown_idx]]
    wrong = wrong_idx[np.argsort(-margin[wrong_idx], kind="stable")][:per_kind]
    # right ones: mix of both classes so the page shows real and fake explanations
    right_real = [i for i in right_idx[np.argsort(-margin[right_idx], kind="stable")] if ss.labels[i] == 1]
    right_fake = [i for i in right_idx[np.argsort(-margin[right_idx], kind="stable")] if ss.labels[i] == 0]
    right = (right_real[: (per_kind + 1) // 2] + right_fake[: per_kind // 2])
    if len(right) < per_kind:
        extra = [i for i in right_real + right_fake if i not in right]
        right += extra[: per_kind - len(right)]
    return [int(i) for i in list(wrong) + right]


def explain_examples(model: Any, processor: Any, ss: ScoreSet, images: Sequence[Any], indices: Sequence[int],
                     out: Path, threshold: float, max_new_tokens: int, normalize: str = "vocab") -> list[Example]:
    """Generate explanations for chosen frames and save their crops under ``out/images``.

    Args:
        model: the I-FAS model.
        processor: its processor.
        ss: the test set's scores (labels, attack types).
        images: PIL images of ``indices`` in the same order.
        indices: frame indices into ``ss``.
        out: the report folder.
        threshold: operating threshold for the right/wrong verdict.
        max_new_tokens: generation budget of the explanation.
        normalize: how ``p_real`` is read ("vocab" or "yes_no", as in scoring).
    """
    from ifas_eval.outputs import writing
    from ifas_model.inference import explain_images

    with writing(out / "images"):
        (out / "images").mkdir(parents=True, exist_ok=True)
    answers = explain_images(model, processor, list(images), max_new_tokens, normalize=normalize) if len(images) else []
    examples = []
    means = video_means(ss)
    for k, (i, image, ans) in enumerate(zip(indices, images, answers, strict=True)):
        file = f"images/{safe_name(ss.name)}_{k:02d}.jpg"
        with writing(out / file):  # a full disk: named; a torn crop is only shown, never read again
            image.convert("RGB").save(out / file, quality=90)
        label = int(ss.labels[i])
        examples.append(Example(file, ss.name, label, ss.attack_types[i], float(means[i]),
                                str(ans.get("judgment", "")), str(ans.get("explanation", "")),
                                bool((means[i] >= threshold) == (label == 1))))
    return examples


def write_attack_table(out: Path, results: Sequence[dict[str, Any]]) -> str:
    """``attack_types.md`` and ``attack_types.csv``; returns the Markdown."""
    rows = attack_type_rows(results)
    from ifas_eval.outputs import write_text_atomic

    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(ATTACK_TABLE_HEADER)
    writer.writerows(rows)
    write_text_atomic(out / "attack_types.csv", table.getvalue())  # whole or not at all (a full disk)
    md = ["| " + " | ".join(ATTACK_TABLE_HEADER) + " |", "|" + "---|" * len(ATTACK_TABLE_HEADER)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(["# Errors per attack type", "", *md, "", f"*{ATTACK_TABLE_CAPTION}*", ""])
    write_text_atomic(out / "attack_types.md", text)
    return text


def write_html(out: Path, title: str, tables_html: str, figures: Sequence[tuple[str, list[str]]],
               results: Sequence[dict[str, Any]], examples: Sequence[Example]) -> Path:
    """The report page ``index.html``: tables, curves and the explanation gallery."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}.cap{color:#555;font-size:90%;max-width:1100px}"
        ".gal{display:flex;flex-wrap:wrap;gap:12px}.card{width:240px;border:2px solid #ccc;padding:6px;"
        "font-size:85%}.right{border-color:#2a2}.wrong{border-color:#c22}img.face{width:224px;height:224px}"
        "</style></head><body>",
        f"<h1>{e(title)}</h1>",
        tables_html,
        "<h2>Errors per attack type</h2>",
        "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in ATTACK_TABLE_HEADER) + "</tr>",
    ]
    for row in attack_type_rows(results):
        parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    parts.append(f"</table><p class='cap'>{e(ATTACK_TABLE_CAPTION)}</p>")
    parts.append("<h2>Curves and score histograms</h2>")
    for name, files in figures:
        parts.append(f"<h3>{e(name)}</h3><div>" + "".join(f"<img src='{e(f)}' style='max-width:420px'>"
                                                         for f in files) + "</div>")
    if examples:
        parts.append("<h2>Generated explanations</h2><p class='cap'>Green: the judgment at the operating "
                     "threshold is right; red: wrong, judged as the metrics judge: on <i>p_real</i>, the video's mean "
                     "one-pass score (an image is a video of one frame). Each video is shown by its frame most "
                     "decisive for that judgment; the text is the model's generated answer for that frame "
                     "(judgment and interpretation).</p>")
        for name in dict.fromkeys(x.test_set for x in examples):
            parts.append(f"<h3>{e(name)}</h3><div class='gal'>")
            for x in (x for x in examples if x.test_set == name):
                truth = "real" if x.label == 1 else f"fake ({x.attack_type or 'unknown'})"
                answer = ". ".join(t for t in (x.judgment, x.explanation) if t) or "(empty generation)"
                parts.append(
                    f"<div class='card {'right' if x.correct else 'wrong'}'><img class='face' src='{e(x.image_file)}'>"
                    f"<div><b>truth:</b> {e(truth)}<br><b>p_real:</b> {x.p_real:.3f} "
                    f"({'right' if x.correct else 'wrong'})<br><b>answer:</b> {e(answer)}</div></div>")
            parts.append("</div>")
    parts.append("</body></html>")
    from ifas_eval.outputs import write_text_atomic

    path = out / "index.html"
    write_text_atomic(path, "\n".join(parts))
    return path
