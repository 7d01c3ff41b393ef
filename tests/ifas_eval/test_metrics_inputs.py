"""Review 13 M3: the fixed-threshold and ISO functions check their inputs as `flip_metrics` does.

Before, ``hter_at_threshold`` counted a NaN score as accepted, dropped a label 2 without a word, and a length
mismatch (or ``iso_metrics`` with a NaN) ended in a numpy ``IndexError``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from ifas_eval.metrics import bpcer_at_apcer, hter_at_threshold, iso_metrics
from ifas_model.metrics import flip_metrics

Y = [1, 0, 1, 0]
ATTACKS = ["live", "print", "live", "replay"]

BAD = [
    pytest.param([np.nan, 0.2, 0.7, 0.4], Y, "scores must be finite numbers (test set 'X'); found NaN or inf",
                 id="nan-real"),
    pytest.param([0.9, np.nan, 0.7, 0.4], Y, "scores must be finite numbers (test set 'X'); found NaN or inf",
                 id="nan-attack"),
    pytest.param([0.9, 0.2, 0.7, 0.4], [2, 0, 1, 0], "labels must be 0 (fake) or 1 (real) (test set 'X'); found 2",
                 id="label-2"),
    pytest.param([0.9, 0.2, 0.7, 0.4], Y[:3], "scores and labels differ in length: 4 vs 3 (test set 'X')",
                 id="length"),
    pytest.param([90.0, 20.0, 70.0, 40.0], Y, "scores must be P(real) in [0, 1] (test set 'X'); got min 20, max 90",
                 id="percent"),
    pytest.param([], [], "empty test set 'X': no scores to evaluate", id="empty"),
]


@pytest.mark.parametrize(("scores", "labels", "message"), BAD)
def test_all_metric_functions_give_the_same_clear_error(scores, labels, message):
    raised = []
    calls = [
        lambda: flip_metrics(scores, labels, name="X"),
        lambda: hter_at_threshold(scores, labels, 0.5, name="X"),
        lambda: iso_metrics(scores, labels, ATTACKS[: len(scores)], 0.5, name="X"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=re.escape(message)) as info:
            call()
        raised.append(str(info.value))
    assert len(set(raised)) == 1  # one shared check, one wording


def test_bpcer_at_apcer_checks_too():
    with pytest.raises(ValueError, match="scores must be finite numbers; found NaN or inf"):
        bpcer_at_apcer([0.9, np.nan, 0.7, 0.4], Y, ATTACKS)
    with pytest.raises(ValueError, match="has 2 real and 0 fake samples"):
        bpcer_at_apcer([0.9, 0.7], [1, 1], ["live", "live"])


def test_attack_types_of_another_length_is_named_before_anything_else():
    with pytest.raises(ValueError, match=r"^test set 'X': attack_types has 3 entries, scores has 4$"):
        iso_metrics([0.9, 0.2, 0.7, 0.4], Y, ATTACKS[:3], 0.5, name="X")


@pytest.mark.parametrize("threshold", ["0.5", None, True])
def test_a_threshold_that_is_not_a_number_is_a_type_error_naming_it(threshold):
    with pytest.raises(TypeError, match=r"^threshold must be a number"):
        hter_at_threshold([0.9, 0.2, 0.7, 0.4], Y, threshold)
    with pytest.raises(TypeError, match=r"^threshold must be a number"):
        iso_metrics([0.9, 0.2, 0.7, 0.4], Y, ATTACKS, threshold)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        hter_at_threshold([0.9, 0.2, 0.7, 0.4], Y, float("nan"))


def test_valid_inputs_in_any_sequence_type_still_give_the_documented_numbers():
    for scores, labels, thr in (([0.9, 0.2, 0.7, 0.4], Y, 0.5), (np.array([0.9, 0.2, 0.7, 0.4]), np.array(Y, bool),
                                                                 np.float32(0.5))):
        r = hter_at_threshold(scores, labels, thr)
        assert (r["far"], r["frr"], r["hter"], r["threshold"]) == (0.0, 0.0, 0.0, 0.5)
    iso = iso_metrics((0.85, 0.4, 0.3, 0.5), (1, 1, 0, 0), np.array(["live", "live", "print", "replay"]), 0.45)
    assert (iso["apcer"], iso["apcer_type"], iso["bpcer"], iso["acer"]) == (1.0, "replay", 0.5, 0.75)


@pytest.mark.parametrize("labels, message", [
    ([1.0, 0.7], "labels must be 1 (real) or 0 (attack), found 0.7"),
    (["1", "0"], "labels must be numbers 1 (real) / 0 (attack), got dtype <U1"),
])
def test_score_set_labels_are_never_cast_silently(labels, message):
    from ifas_eval.metrics import ScoreSet

    with pytest.raises(ValueError, match=re.escape(message)):
        ScoreSet("X", [0.9, 0.1], labels, ["v1", "v2"])
    assert ScoreSet("X", [0.9, 0.1], [1.0, 0.0], ["v1", "v2"]).labels.tolist() == [1, 0]  # whole floats are fine
