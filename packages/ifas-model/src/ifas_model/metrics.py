"""The FLIP/SSDG metric convention of cross-domain face anti-spoofing (AUC, EER/HTER, TPR@FPR=1%).

This is the convention the paper's comparison tables use (FLIP ``utils/statistic.py`` and
``utils/evaluate.py``, the same code as SSDG-CVPR2020). It is written here once, with numpy and
scikit-learn only (no torch), so that the trainer's periodic evaluation and ``ifas-eval`` report the same
numbers. Step by step:

1. ``label = 1`` is real (bona fide), a score is P(real). When ``video_ids`` are given, the frame scores of
   one video are averaged first and every metric is computed on one score per video.
2. ``auc`` = ``sklearn.metrics.roc_auc_score(labels, scores)``.
3. ``threshold``: scanned over the fixed grid 0, 1e-4, 2e-4, ..., 1.0 plus 1.1; a sample is predicted real
   iff ``score >= threshold``. FAR = FP / (FP + TN) (attacks accepted), FRR = FN / (FN + TP) (reals
   rejected). The kept threshold minimises |FRR - FAR|; ties go to the LARGEST threshold (the reference
   compares with ``<=`` while scanning upwards).
4. ``eer`` = (FAR + FRR) / 2 at that threshold, and ``hter`` = the same quantity (the reference computes
   HTER at the threshold it picked on the same test set, so HTER equals this EER).
5. ``tpr_at_fpr_1pct``: ``fpr, tpr, _ = roc_curve(labels, scores)``; the last ``tpr`` whose ``fpr <= 0.01``
   (0 if there is none).

The threshold is chosen on the evaluated set itself (an oracle threshold): this is what the published
tables report, and it is NOT a deployable operating point. ``ifas_eval.metrics`` adds HTER at a threshold
fixed on a dev split and the ISO/IEC 30107-3 metrics.

All rates are fractions in [0, 1]; tables multiply by 100.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

CONVENTION = "flip-ssdg"
"""Name of this convention, written into every result (`convention` field)."""

CONVENTION_DESCRIPTION = (
    "FLIP/SSDG: label 1 = real, score = P(real); frame scores averaged per video; AUC = roc_auc_score; "
    "threshold on the grid 0:1e-4:1 plus 1.1 minimising |FRR - FAR| (ties -> largest), chosen on the test "
    "set itself; HTER = EER = (FAR + FRR) / 2 there; TPR@FPR=1% = last ROC point with FPR <= 1%"
)
"""One-line description printed under tables."""

GRID_DENSITY = 10_000
"""Steps of the threshold grid on [0, 1] (the reference's ``grid_density``)."""


def threshold_grid(density: int = GRID_DENSITY) -> np.ndarray:
    """The reference threshold grid: ``i / density`` for i = 0..density, then 1.1 (rejects everything)."""
    grid = np.arange(density + 1, dtype=np.float64) / float(density)
    return np.append(grid, 1.1)


def check_scores(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                 name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Check scores and labels the way every metric here and in ``ifas_eval.metrics`` needs them.

    Args:
        scores: P(real) per sample, numbers in [0, 1] (the convention's threshold grid ends at 1.1, so a
            logit or a percentage would give a wrong HTER without any other sign).
        labels: 1 = real, 0 = fake (bool and float 0.0/1.0 are accepted), aligned with ``scores``.
        name: the test set's name, used in error messages.

    Returns:
        ``(scores, labels)`` as flat float64 and int64 arrays.

    Raises:
        ValueError: lengths differ, no scores, a score that is not a finite number in [0, 1], a label other
            than 0 or 1; the message names the test set when ``name`` is given.
    """
    where = f" (test set {name!r})" if name else ""
    try:
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"scores must be numbers, P(real) in [0, 1]{where}: {e}") from None
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} vs {y.size}{where}")
    if s.size == 0:
        raise ValueError(f"empty test set {name!r}: no scores to evaluate" if name else "empty test set: no scores to evaluate")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores must be finite numbers{where}; found NaN or inf")
    if s.min() < 0.0 or s.max() > 1.0:
        raise ValueError(f"scores must be P(real) in [0, 1]{where}; got min {s.min():g}, max {s.max():g} "
                         "(logits: apply a sigmoid first; percentages: divide by 100)")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        first = y[bad][0]
        first = first.item() if isinstance(first, np.generic) else first
        raise ValueError(f"labels must be 0 (fake) or 1 (real){where}; found {first!r}")
    return s, y.astype(np.int64)


def video_level(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                video_ids: Sequence[Any] | np.ndarray, *, name: str | None = None,
                ) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Average frame scores per video (FLIP/SSDG step 1).

    Args:
        scores: frame scores, P(real).
        labels: frame labels (1 = real); all frames of one video must share a label.
        video_ids: the video of each frame (any hashable values).
        name: test-set name for error messages.

    Returns:
        ``(video_scores, video_labels, video_order)`` in order of first appearance of each video.

    Raises:
        ValueError: lengths differ, or a video mixes real and fake frames.
    """
    s, y = check_scores(scores, labels, name)
    ids = list(video_ids)
    if len(ids) != s.size:
        raise ValueError(f"video_ids and scores differ in length: {len(ids)} vs {s.size}"
                         + (f" (test set {name!r})" if name else ""))
    index: dict[Any, int] = {}
    codes = np.empty(s.size, dtype=np.int64)
    for i, v in enumerate(ids):
        codes[i] = index.setdefault(v, len(index))
    n = len(index)
    counts = np.bincount(codes, minlength=n)
    video_scores = np.bincount(codes, weights=s, minlength=n) / counts
    label_sum = np.bincount(codes, weights=y, minlength=n)
    mixed = (label_sum != 0) & (label_sum != counts)
    if mixed.any():
        order = list(index)
        raise ValueError(f"video {order[int(np.argmax(mixed))]!r} has both real and fake frames"
                         + (f" (test set {name!r})" if name else ""))
    video_labels = (label_sum > 0).astype(np.int64)
    return video_scores, video_labels, list(index)


def rates_at(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | float,
             ) -> tuple[np.ndarray, np.ndarray]:
    """FAR and FRR at each threshold, predicting real iff ``score >= threshold``.

    FAR = attacks accepted / attacks, FRR = reals rejected / reals. When a class is absent the
    reference sets its rate to 1.0; callers here reject single-class sets before calling.
    """
    thr = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    real = np.sort(scores[labels == 1])
    fake = np.sort(scores[labels == 0])
    # number of scores < thr = searchsorted(side="left"); those are rejected
    reals_rejected = np.searchsorted(real, thr, side="left")
    fakes_accepted = fake.size - np.searchsorted(fake, thr, side="left")
    frr = reals_rejected / real.size if real.size else np.ones_like(thr)
    far = fakes_accepted / fake.size if fake.size else np.ones_like(thr)
    return far.astype(np.float64), frr.astype(np.float64)


def eer_threshold(scores: np.ndarray, labels: np.ndarray, density: int = GRID_DENSITY,
                  ) -> tuple[float, float, float, float]:
    """The reference EER search: ``(eer, threshold, far, frr)`` (ties to the largest threshold)."""
    grid = threshold_grid(density)
    far, frr = rates_at(scores, labels, grid)
    dist = np.abs(frr - far)
    # the reference keeps the last grid point with dist <= running minimum: the largest argmin
    best = int(np.flatnonzero(dist == dist.min())[-1])
    return float((far[best] + frr[best]) / 2.0), float(grid[best]), float(far[best]), float(frr[best])


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float = 0.01) -> float:
    """TPR at a target FPR by the reference's last-point rule on ``sklearn.metrics.roc_curve``."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    kept = tpr[fpr <= target_fpr]
    return float(kept[-1]) if kept.size else 0.0


def require_both_classes(labels: np.ndarray, name: str | None = None) -> None:
    """Raise `ValueError` unless both real (1) and fake (0) samples are present."""
    n_real = int((labels == 1).sum())
    n_fake = int((labels == 0).sum())
    if n_real == 0 or n_fake == 0:
        what = f"test set {name!r}" if name else "the test set"
        raise ValueError(f"{what} has {n_real} real and {n_fake} fake samples: AUC, EER and HTER need both "
                         "classes")


def flip_metrics(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                 video_ids: Sequence[Any] | np.ndarray | None = None, *, name: str | None = None,
                 ) -> dict[str, Any]:
    """AUC, EER, HTER, threshold and TPR@FPR=1% under the FLIP/SSDG convention (module docstring).

    Args:
        scores: P(real) per frame (or per image/video when ``video_ids`` is None).
        labels: 1 = real, 0 = fake, aligned with ``scores``.
        video_ids: when given, frame scores are averaged per video first (one video = one sample).
        name: the test set's name, used in error messages.

    Returns:
        ``{"convention": "flip-ssdg", "auc", "eer", "hter", "threshold", "far", "frr", "tpr_at_fpr_1pct",
        "accuracy", "n_samples", "n_real", "n_fake", "n_frames"}``; rates are fractions in [0, 1]. ``far``
        and ``frr`` are the two halves of the HTER at ``threshold``; ``accuracy`` is at ``threshold``.

    Raises:
        ValueError: empty or single-class set, labels not 0/1, scores that are not finite numbers in [0, 1]
            (`check_scores`), a video with mixed labels.

    An ``auc`` below 0.5 on a whole test set usually means the scores are P(fake), not P(real): pass
    ``1 - scores`` (the metrics do not guess the polarity).
    """
    from sklearn.metrics import roc_auc_score

    s, y = check_scores(scores, labels, name)
    n_frames = int(s.size)
    if video_ids is not None:
        s, y, _ = video_level(s, y, video_ids, name=name)
    require_both_classes(y, name)
    eer, thr, far, frr = eer_threshold(s, y)
    predicted_real = s >= thr
    return {
        "convention": CONVENTION,
        "auc": float(roc_auc_score(y, s)),
        "eer": eer,
        "hter": float((far + frr) / 2.0),
        "threshold": thr,
        "far": far,
        "frr": frr,
        "tpr_at_fpr_1pct": tpr_at_fpr(s, y, 0.01),
        "accuracy": float(np.mean(predicted_real == (y == 1))),
        "n_samples": int(s.size),
        "n_real": int((y == 1).sum()),
        "n_fake": int((y == 0).sum()),
        "n_frames": n_frames,
    }
