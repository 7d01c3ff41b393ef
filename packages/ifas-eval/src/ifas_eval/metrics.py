"""FAS metrics under named conventions: FLIP/SSDG (as Table 1's comparison methods), fixed-threshold HTER, ISO 30107-3.

The headline HTER follows FLIP/SSDG as Table 1's comparison methods (FLIP/SSDG) do; the paper does not state
its convention (and four Table 2 cells fit none: ``docs/metrics.md``, "Known inconsistencies in the paper").

Every result carries a ``convention`` field naming how it was computed (see ``docs/metrics.md``):

* ``flip-ssdg`` (`ifas_model.metrics.flip_metrics`): video-level scores, AUC, EER threshold chosen on the
  test set itself, HTER = EER there, TPR@FPR=1%. The default, as Table 1's comparison methods compute it.
* ``fixed-threshold``: HTER = (FAR + FRR) / 2 at a threshold fixed beforehand (given by the user, or the
  FLIP/SSDG EER threshold of a dev split: ``threshold_source`` says which).
* ``iso-30107-3``: APCER per attack type and the maximum over types (the reported APCER), BPCER and
  ACER = (max APCER + BPCER) / 2 at the same fixed threshold, as Idiap's bob.pad.base computes them: an
  attack with ``score >= threshold`` is accepted (counts in APCER), a bona fide sample with
  ``score < threshold`` is rejected (counts in BPCER). Plus BPCER at APCER = 1%, 5%, 10%.

Scores are P(real) and ``label = 1`` is real everywhere (`scf.schema`). A single-class or empty test set
raises `ValueError` naming the set, so that no table ever shows a NaN.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ifas_model.metrics import (
    CONVENTION as FLIP_CONVENTION,
)
from ifas_model.metrics import (
    check_scores,
    eer_threshold,
    flip_metrics,
    rates_at,
    require_both_classes,
    video_level,
)

logger = logging.getLogger(__name__)

FIXED_CONVENTION = "fixed-threshold"
ISO_CONVENTION = "iso-30107-3"
DEFAULT_THRESHOLD = 0.5
"""Operating threshold when neither a value nor a dev split is given: P(real) >= 0.5. It is the model's own
"Yes"-over-"No" choice only for scores normalised over the two answers (``normalize="yes_no"``); for the
paper's vocabulary-wide P(" Yes") it is not. Not tuned to anything; a deployment should fix its threshold on a
dev set."""
APCER_TARGETS = (0.01, 0.05, 0.10)
"""Operating points of ``bpcer_at_apcer``: BPCER at APCER = 1%, 5% (bob's "bpcer20") and 10% ("bpcer10")."""

CONVENTION_CAPTIONS = {
    FLIP_CONVENTION: "FLIP/SSDG: per-video mean score; AUC = roc_auc_score; threshold on the grid 0:1e-4:1 "
    "(+1.1) minimising |FRR-FAR| on the test set itself (ties -> largest); HTER = EER at that threshold; "
    "TPR@FPR=1% = last ROC point with FPR <= 1%.",
    FIXED_CONVENTION: "Fixed threshold: HTER = (FAR + FRR) / 2 at a threshold fixed beforehand (given, a dev "
    "split's FLIP/SSDG EER threshold, or 0.5); real iff score >= threshold.",
    ISO_CONVENTION: "ISO/IEC 30107-3 (bob.pad.base): APCER per attack type (attack accepted iff score >= "
    "threshold), reported APCER = max over types; BPCER = bona fide with score < threshold; ACER = (APCER + "
    "BPCER) / 2; BPCER@APCER=x at the lowest threshold whose max-over-types APCER <= x on this set.",
}


@dataclass
class ScoreSet:
    """Frame scores of one test set: P(real) per frame with label, video and attack type.

    Attributes:
        name: the test set's name (a target dataset, "MSU-MFSD", or a score file's name).
        scores: P(real) per frame.
        labels: 1 = real, 0 = fake.
        video_ids: video of each frame; frames of one video are averaged (images: their own id).
        attack_types: attack type per frame (`scf.schema.ATTACK_TYPES`); "" when unknown.
        frames: frame index per frame (provenance only).
        paths: image path or other provenance per frame ("" when unknown).
    """

    name: str
    scores: np.ndarray
    labels: np.ndarray
    video_ids: list[str]
    attack_types: list[str] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        raw = np.asarray(self.labels)
        if raw.dtype.kind not in "biuf":  # strings ("1"), objects: never cast silently
            raise ValueError(f"test set {self.name!r}: labels must be numbers 1 (real) / 0 (attack), got dtype "
                             f"{raw.dtype}")
        if raw.dtype.kind == "f":
            bad = raw[~np.isin(raw, (0.0, 1.0))]
            if bad.size:
                raise ValueError(f"test set {self.name!r}: labels must be 1 (real) or 0 (attack), found "
                                 f"{bad[0].item()}")
        self.labels = raw.astype(np.int64)
        n = self.scores.size
        if not self.attack_types:
            self.attack_types = ["live" if y == 1 else "" for y in self.labels]
        if not self.frames:
            self.frames = [0] * n
        if not self.paths:
            self.paths = [""] * n
        for what, values in (("labels", self.labels), ("video_ids", self.video_ids),
                             ("attack_types", self.attack_types), ("frames", self.frames), ("paths", self.paths)):
            if len(values) != n:
                raise ValueError(f"test set {self.name!r}: {what} has {len(values)} entries, scores has {n}")

    def __len__(self) -> int:
        return int(self.scores.size)

    def videos(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Video-level ``(scores, labels, attack_types)``: frame scores averaged per video."""
        v_scores, v_labels, order = video_level(self.scores, self.labels, self.video_ids, name=self.name)
        first_attack: dict[str, str] = {}
        for vid, attack in zip(self.video_ids, self.attack_types, strict=True):
            first_attack.setdefault(vid, attack)
        return v_scores, v_labels, [first_attack[v] for v in order]


def check_threshold(threshold: Any, what: str = "threshold") -> float:
    """A fixed operating threshold as a float: a real number (not a string, not a bool), finite.

    Args:
        threshold: the value given.
        what: its name in the message (``threshold``).

    Returns:
        ``float(threshold)``.

    Raises:
        TypeError: not a real number (e.g. the string ``"0.5"``).
        ValueError: NaN or infinite.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"{what} must be a number (P(real) at or above it is judged real), got "
                        f"{type(threshold).__name__} {threshold!r}")
    value = float(threshold)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {threshold!r}")
    return value


def hter_at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float, *, name: str | None = None,
                      threshold_source: str = "given") -> dict[str, Any]:
    """HTER = (FAR + FRR) / 2 at a fixed threshold (real iff ``score >= threshold``).

    Args:
        scores: P(real), one per sample (video-level already if frames are to be averaged).
        labels: 1 = real, 0 = fake.
        threshold: the fixed threshold.
        name: test-set name for errors.
        threshold_source: where the threshold came from ("given", "dev:<set>", "default-0.5").

    Returns:
        ``{"convention": "fixed-threshold", "threshold", "threshold_source", "far", "frr", "hter"}``.

    Raises:
        ValueError: the checks of `ifas_model.metrics.check_scores` (lengths, empty, scores not finite or not
            in [0, 1], labels not 0/1), a single-class set, a NaN threshold.
        TypeError: ``threshold`` is not a number.
    """
    s, y = check_scores(scores, labels, name)
    threshold = check_threshold(threshold)
    require_both_classes(y, name)
    far, frr = rates_at(s, y, threshold)
    return {
        "convention": FIXED_CONVENTION,
        "threshold": threshold,
        "threshold_source": threshold_source,
        "far": float(far[0]),
        "frr": float(frr[0]),
        "hter": float((far[0] + frr[0]) / 2.0),
    }


def dev_threshold(dev: ScoreSet) -> float:
    """The FLIP/SSDG EER threshold of a dev set (video-level), to be applied unchanged to test sets."""
    s, y, _ = dev.videos()
    require_both_classes(y, dev.name)
    return eer_threshold(s, y)[1]


def _apcer_per_type(scores: np.ndarray, labels: np.ndarray, attacks: Sequence[str], thresholds: np.ndarray,
                    ) -> dict[str, np.ndarray]:
    """APCER of each attack type at each threshold (attack accepted iff score >= threshold)."""
    out: dict[str, np.ndarray] = {}
    attacks_arr = np.asarray(attacks, dtype=object)
    for attack in sorted({a for a, y in zip(attacks, labels, strict=True) if y == 0}):
        sel = np.sort(scores[(labels == 0) & (attacks_arr == attack)])
        out[attack or "unknown"] = (sel.size - np.searchsorted(sel, thresholds, side="left")) / sel.size
    return out


def _checked(scores: Any, labels: Any, attack_types: Sequence[str], name: str | None,
             ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`check_scores`, the length of ``attack_types``, and both classes present."""
    s, y = check_scores(scores, labels, name)
    attacks = list(attack_types)
    if len(attacks) != s.size:
        where = f"test set {name!r}: " if name else ""
        raise ValueError(f"{where}attack_types has {len(attacks)} entries, scores has {s.size}")
    require_both_classes(y, name)
    return s, y, attacks


def iso_metrics(scores: np.ndarray, labels: np.ndarray, attack_types: Sequence[str], threshold: float, *,
                name: str | None = None, threshold_source: str = "given",
                apcer_targets: Sequence[float] = APCER_TARGETS) -> dict[str, Any]:
    """ISO/IEC 30107-3 metrics as bob.pad.base computes them, at a fixed threshold (module docstring).

    Args:
        scores: P(real), one per sample (video-level already if frames are to be averaged).
        labels: 1 = real (bona fide), 0 = attack.
        attack_types: attack type per sample (`scf.schema.ATTACK_TYPES`); "" is reported as "unknown".
        threshold: operating threshold; real iff ``score >= threshold``.
        name: test-set name for errors.
        threshold_source: where the threshold came from.
        apcer_targets: APCER values at which BPCER is reported.

    Returns:
        ``{"convention": "iso-30107-3", "threshold", "threshold_source", "apcer_per_type": {type: apcer},
        "apcer" (max over types), "apcer_type" (the worst type), "apcer_pooled", "bpcer", "acer",
        "bpcer_at_apcer": {"1%": {"bpcer", "threshold"}, ...}, "n_per_type"}``.

    Raises:
        ValueError: as `hter_at_threshold`, or ``attack_types`` of another length than ``scores``.
        TypeError: ``threshold`` is not a number.
    """
    s, y, attack_types = _checked(scores, labels, attack_types, name)
    threshold = check_threshold(threshold)
    thr = np.array([threshold])
    per_type = {k: float(v[0]) for k, v in _apcer_per_type(s, y, attack_types, thr).items()}
    worst = max(per_type, key=lambda k: per_type[k])
    far, frr = rates_at(s, y, thr)
    apcer = per_type[worst]
    counts: dict[str, int] = {}
    for a, lab in zip(attack_types, y, strict=True):
        key = "live" if lab == 1 else (a or "unknown")
        counts[key] = counts.get(key, 0) + 1
    return {
        "convention": ISO_CONVENTION,
        "threshold": threshold,
        "threshold_source": threshold_source,
        "apcer_per_type": per_type,
        "apcer": apcer,
        "apcer_type": worst,
        "apcer_pooled": float(far[0]),
        "bpcer": float(frr[0]),
        "acer": float((apcer + frr[0]) / 2.0),
        "bpcer_at_apcer": bpcer_at_apcer(s, y, attack_types, apcer_targets),
        "n_per_type": counts,
    }


def bpcer_at_apcer(scores: np.ndarray, labels: np.ndarray, attack_types: Sequence[str],
                   targets: Sequence[float] = APCER_TARGETS) -> dict[str, dict[str, float]]:
    """BPCER at the lowest threshold whose APCER (max over attack types) is <= each target, on this set.

    Candidate thresholds are the distinct scores plus one just above the largest (accepts no attack). The
    lowest admissible threshold is taken because BPCER can only grow with the threshold. This is a point of
    the set's own DET curve, not a dev-set operating point.

    Returns:
        ``{"1%": {"apcer_target": 0.01, "threshold": t, "apcer": a, "bpcer": b}, ...}``.

    Raises:
        ValueError: as `iso_metrics`.
    """
    s, y, attack_types = _checked(scores, labels, attack_types, None)
    candidates = np.unique(np.append(s, np.nextafter(s.max(), np.inf)))
    per_type = _apcer_per_type(s, y, attack_types, candidates)
    apcer_max = np.max(np.stack(list(per_type.values())), axis=0)
    _, frr = rates_at(s, y, candidates)
    out: dict[str, dict[str, float]] = {}
    for target in targets:
        ok = np.flatnonzero(apcer_max <= target + 1e-12)
        i = int(ok[0])  # the last candidate accepts no attack, so ok is never empty
        out[f"{target * 100:g}%"] = {"apcer_target": float(target), "threshold": float(candidates[i]),
                                     "apcer": float(apcer_max[i]), "bpcer": float(frr[i])}
    return out


def evaluate_score_set(score_set: ScoreSet, *, threshold: float | None = None,
                       threshold_source: str | None = None) -> dict[str, Any]:
    """All metrics of one test set, each under its named convention, on video-level scores.

    Args:
        score_set: the frame scores.
        threshold: the fixed operating threshold for ``fixed-threshold`` and ``iso-30107-3`` (default 0.5).
        threshold_source: where it came from (default "given", or "default-0.5" when ``threshold`` is None).

    Returns:
        ``{"test_set", "convention": "flip-ssdg", <flip_metrics fields>, "fixed_threshold": {...},
        "iso": {...}}``; the top-level numbers are the FLIP/SSDG ones (as Table 1's comparison methods
        compute them; the paper does not state its convention).

    Raises:
        ValueError: empty or single-class test set (named), mixed labels within a video.
    """
    if len(score_set) == 0:
        raise ValueError(f"empty test set {score_set.name!r}: no scores to evaluate")
    if threshold is None:
        threshold, source = DEFAULT_THRESHOLD, threshold_source or "default-0.5"
    else:
        source = threshold_source or "given"
    result: dict[str, Any] = {"test_set": score_set.name}
    result.update(flip_metrics(score_set.scores, score_set.labels, score_set.video_ids, name=score_set.name))
    v_scores, v_labels, v_attacks = score_set.videos()
    result["fixed_threshold"] = hter_at_threshold(v_scores, v_labels, threshold, name=score_set.name,
                                                  threshold_source=source)
    result["iso"] = iso_metrics(v_scores, v_labels, v_attacks, threshold, name=score_set.name,
                                threshold_source=source)
    return result
