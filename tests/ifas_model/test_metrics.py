"""The FLIP/SSDG metric core: hand-computed cases, ties, class imbalance, and agreement with sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from ifas_model.metrics import CONVENTION, flip_metrics, threshold_grid, video_level


def _naive_eer(scores, labels):
    """Independent slow oracle: scan the grid in Python, keep the last threshold with the minimal gap."""
    best = None
    for thr in [i / 10000 for i in range(10001)] + [1.1]:
        accepted = [s >= thr for s in scores]
        fa = sum(a and y == 0 for a, y in zip(accepted, labels, strict=True))
        fr = sum((not a) and y == 1 for a, y in zip(accepted, labels, strict=True))
        far = fa / sum(y == 0 for y in labels)
        frr = fr / sum(y == 1 for y in labels)
        if best is None or abs(frr - far) <= best[0]:
            best = (abs(frr - far), thr, far, frr)
    return best


def test_grid_is_the_reference_grid():
    grid = threshold_grid()
    assert grid.size == 10002
    assert grid[0] == 0.0 and grid[-2] == 1.0 and grid[-1] == 1.1
    assert grid[8000] == 0.8 and grid[1] == 1e-4


def test_perfect_separation_picks_the_largest_zero_gap_threshold():
    m = flip_metrics([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])
    assert m["convention"] == CONVENTION
    assert m["auc"] == 1.0
    assert m["hter"] == 0.0 and m["eer"] == 0.0
    # every threshold in (0.2, 0.8] separates perfectly; ties go to the largest grid point
    assert m["threshold"] == pytest.approx(0.8)
    assert m["tpr_at_fpr_1pct"] == 1.0
    assert m["accuracy"] == 1.0
    assert (m["n_real"], m["n_fake"], m["n_samples"]) == (2, 2, 4)


def test_hand_computed_overlap():
    # reals 0.6, 0.4; fakes 0.5, 0.3.  thr in (0.4, 0.5]: FRR = 1/2, FAR = 1/2 -> gap 0, HTER 0.5
    m = flip_metrics([0.6, 0.4, 0.5, 0.3], [1, 1, 0, 0])
    assert m["threshold"] == pytest.approx(0.5)
    assert m["far"] == 0.5 and m["frr"] == 0.5
    assert m["hter"] == 0.5 == m["eer"]
    assert m["auc"] == 0.75  # 3 of 4 real/fake pairs ordered correctly
    assert m["tpr_at_fpr_1pct"] == 0.5  # reject everything below 0.6: 1 of 2 reals, no fake accepted


def test_all_scores_tied_goes_to_threshold_1_1():
    # every threshold has |FRR - FAR| = 1; the tie goes to the last grid point, 1.1
    m = flip_metrics([0.5] * 4, [1, 0, 1, 0])
    assert m["threshold"] == 1.1
    assert m["far"] == 0.0 and m["frr"] == 1.0 and m["hter"] == 0.5
    assert m["auc"] == 0.5


def test_heavy_class_imbalance():
    # 1 real at 0.95; 98 fakes at 0.1 and one fake at 0.99
    scores = [0.95] + [0.1] * 98 + [0.99]
    labels = [1] + [0] * 99
    m = flip_metrics(scores, labels)
    assert m["threshold"] == pytest.approx(0.95)
    assert m["far"] == pytest.approx(1 / 99) and m["frr"] == 0.0
    assert m["hter"] == pytest.approx(0.5 / 99)
    assert m["auc"] == pytest.approx(98 / 99)
    # the first ROC point past (0, 0) already has FPR 1/99 > 1%: the last-point rule gives 0
    assert m["tpr_at_fpr_1pct"] == 0.0


def test_video_averaging_happens_before_the_metrics():
    # video a (real): frames 0.9 and 0.1 -> 0.5; video b (fake): 0.6 and 0.6 -> 0.6
    scores = [0.9, 0.1, 0.6, 0.6]
    labels = [1, 1, 0, 0]
    vids = ["a", "a", "b", "b"]
    v_scores, v_labels, order = video_level(scores, labels, vids)
    assert order == ["a", "b"] and v_labels.tolist() == [1, 0]
    assert v_scores.tolist() == pytest.approx([0.5, 0.6])
    m = flip_metrics(scores, labels, vids)
    assert m["n_samples"] == 2 and m["n_frames"] == 4
    assert m["auc"] == 0.0  # per video the fake outranks the real
    frame_level = flip_metrics(scores, labels)
    assert frame_level["auc"] == 0.5


def test_mixed_labels_in_a_video_is_an_error():
    with pytest.raises(ValueError, match="both real and fake"):
        flip_metrics([0.1, 0.2, 0.3], [1, 0, 0], ["v", "v", "w"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_and_an_independent_grid_scan(seed):
    rng = np.random.default_rng(seed)
    n_real, n_fake = 37, 300  # imbalanced, as in Replay-Attack or OULU-NPU test sets
    scores = np.concatenate([rng.beta(5, 2, n_real), rng.beta(2, 5, n_fake)]).round(3)  # .round: many ties
    labels = np.array([1] * n_real + [0] * n_fake)
    m = flip_metrics(scores, labels)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, scores))
    gap, thr, far, frr = _naive_eer(scores.tolist(), labels.tolist())
    assert m["threshold"] == thr
    assert (m["far"], m["frr"]) == pytest.approx((far, frr))
    assert m["hter"] == pytest.approx((far + frr) / 2)
    fpr, tpr, _ = roc_curve(labels, scores)
    assert m["tpr_at_fpr_1pct"] == tpr[fpr <= 0.01][-1]
    for key in ("auc", "eer", "hter", "threshold", "tpr_at_fpr_1pct"):
        assert 0.0 <= m[key] <= 1.1


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        ([], [], "empty test set 'X'"),
        ([0.1, 0.2], [1, 1], "test set 'X' has 2 real and 0 fake"),
        ([0.1, 0.2], [0, 0], "test set 'X' has 0 real and 2 fake"),
        ([0.1, float("nan")], [0, 1], "finite"),
        ([0.1, 0.2], [0, 2], "labels must be 0"),
        ([0.1], [0, 1], "differ in length"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_set(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        flip_metrics(scores, labels, name="X")


@pytest.mark.parametrize(
    ("scores", "shown"),
    [
        ([3.0, 1.2, 1.5, 1.3], "got min 1.2, max 3"),  # a baseline's logits: AUC 1.0 but the grid ends at 1.1
        ([90.0, 20.0, 70.0, 40.0], "got min 20, max 90"),  # percentages
        ([0.9, -0.2, 0.7, 0.4], "got min -0.2, max 0.9"),
    ],
)
def test_scores_outside_0_1_are_refused_not_scored_with_a_wrong_hter(scores, shown):
    """Review 13 M2: before, [3.0, 1.2, 1.5, 1.3] gave AUC 1.0 with HTER 0.5 at threshold 1.1, silently."""
    with pytest.raises(ValueError, match=r"scores must be P\(real\) in \[0, 1\] \(test set 'X'\); " + shown):
        flip_metrics(scores, [1, 0, 1, 0], name="X")
    with pytest.raises(ValueError, match=r"logits: apply a sigmoid first; percentages: divide by 100"):
        flip_metrics(scores, [1, 0, 1, 0], ["a", "b", "c", "d"])


def test_the_range_ends_are_scores_and_messages_show_plain_values():
    m = flip_metrics([1.0, 0.0, 1.0, 0.0], [1, 0, 1, 0])
    assert (m["auc"], m["hter"]) == (1.0, 0.0)
    with pytest.raises(ValueError, match=r"found 2$"):  # not "np.int64(2)"
        flip_metrics([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match=r"found 'real'$"):
        flip_metrics([0.1, 0.2], ["real", "fake"])
    with pytest.raises(ValueError, match=r"scores must be numbers, P\(real\) in \[0, 1\]"):
        flip_metrics(["high", "low"], [1, 0])
