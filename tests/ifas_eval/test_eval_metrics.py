"""ifas_eval.metrics: fixed-threshold HTER, ISO/IEC 30107-3 (bob convention), BPCER@APCER, score sets."""

from __future__ import annotations

import numpy as np
import pytest

from ifas_eval.metrics import (
    ScoreSet,
    bpcer_at_apcer,
    dev_threshold,
    evaluate_score_set,
    hter_at_threshold,
    iso_metrics,
)


def test_hter_at_a_given_threshold_counts_ties_as_accepted():
    # real iff score >= thr: the fake at exactly 0.5 is accepted, the real at 0.4 rejected
    m = hter_at_threshold(np.array([0.9, 0.4, 0.5, 0.1]), np.array([1, 1, 0, 0]), 0.5)
    assert m["convention"] == "fixed-threshold"
    assert (m["far"], m["frr"], m["hter"]) == (0.5, 0.5, 0.5)
    assert m["threshold_source"] == "given"


def test_iso_apcer_is_the_maximum_over_attack_types():
    scores = np.array([0.9, 0.8, 0.7, 0.3,   # 4 reals: one rejected at 0.5 -> BPCER 1/4
                       0.6, 0.2, 0.1, 0.1,   # 4 prints: one accepted -> APCER 1/4
                       0.55, 0.52, 0.1])     # 3 replays: two accepted -> APCER 2/3
    labels = np.array([1] * 4 + [0] * 7)
    attacks = ["live"] * 4 + ["print"] * 4 + ["replay"] * 3
    m = iso_metrics(scores, labels, attacks, 0.5)
    assert m["convention"] == "iso-30107-3"
    assert m["apcer_per_type"] == {"print": 0.25, "replay": pytest.approx(2 / 3)}
    assert m["apcer"] == pytest.approx(2 / 3) and m["apcer_type"] == "replay"
    assert m["apcer_pooled"] == pytest.approx(3 / 7)
    assert m["bpcer"] == 0.25
    assert m["acer"] == pytest.approx((2 / 3 + 0.25) / 2)
    assert m["n_per_type"] == {"live": 4, "print": 4, "replay": 3}


def test_bpcer_at_apcer_picks_the_lowest_admissible_threshold():
    # 10 attacks of one type at 0.0 .. 0.9 ; reals at 0.35, 0.85, 0.95
    attacks = np.arange(10) / 10
    scores = np.concatenate([attacks, [0.35, 0.85, 0.95]])
    labels = np.array([0] * 10 + [1] * 3)
    types = ["print"] * 10 + ["live"] * 3
    out = bpcer_at_apcer(scores, labels, types, (0.01, 0.10, 0.5))
    # APCER <= 1%: no attack may pass -> threshold just above 0.9 -> reals 0.35, 0.85 rejected
    assert out["1%"]["apcer"] == 0.0 and out["1%"]["threshold"] > 0.9
    assert out["1%"]["bpcer"] == pytest.approx(2 / 3)
    # APCER <= 10%: the attack at 0.9 may pass; the lowest such candidate is the real score 0.85,
    # where only the real at 0.35 is rejected
    assert out["10%"]["threshold"] == 0.85 and out["10%"]["apcer"] == pytest.approx(0.1)
    assert out["10%"]["bpcer"] == pytest.approx(1 / 3)
    # APCER <= 50%: threshold 0.5 -> only the real at 0.35 rejected
    assert out["50%"]["threshold"] == 0.5 and out["50%"]["bpcer"] == pytest.approx(1 / 3)


def test_dev_threshold_is_the_flip_eer_threshold_of_the_dev_set():
    dev = ScoreSet("dev", [0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0], ["a", "b", "c", "d"])
    assert dev_threshold(dev) == pytest.approx(0.8)


def test_evaluate_score_set_names_every_convention_and_averages_videos():
    ss = ScoreSet("T", [0.9, 0.7, 0.2, 0.4, 0.6], [1, 1, 0, 0, 0], ["r", "r", "f1", "f1", "f2"],
                  ["live", "live", "print", "print", "replay"])
    r = evaluate_score_set(ss)
    assert r["test_set"] == "T" and r["convention"] == "flip-ssdg"
    assert r["n_samples"] == 3 and r["n_frames"] == 5
    assert r["fixed_threshold"]["threshold_source"] == "default-0.5"
    # video level: real 0.8, print 0.3, replay 0.6 -> the replay video is accepted at 0.5
    assert r["iso"]["apcer_per_type"] == {"print": 0.0, "replay": 1.0}
    assert r["fixed_threshold"]["far"] == 0.5
    r2 = evaluate_score_set(ss, threshold=0.7, threshold_source="dev:x")
    assert r2["iso"]["threshold"] == 0.7 and r2["fixed_threshold"]["threshold_source"] == "dev:x"
    assert r2["iso"]["apcer"] == 0.0


@pytest.mark.parametrize(("labels", "match"), [([1, 1], "test set 'only-real' has 2 real and 0 fake")])
def test_single_class_is_a_clear_error(labels, match):
    ss = ScoreSet("only-real", [0.2, 0.9], labels, ["a", "b"])
    with pytest.raises(ValueError, match=match):
        evaluate_score_set(ss)


def test_empty_set_is_a_clear_error():
    with pytest.raises(ValueError, match="empty test set 'nothing'"):
        evaluate_score_set(ScoreSet("nothing", [], [], []))
