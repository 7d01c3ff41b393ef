"""The Lopsided LM loss (paper eq. 4), checked against numbers computed by hand."""

from __future__ import annotations

import math

import pytest


def _example():
    """B = 2, T = 4, V = 3. Logits chosen so that every log-softmax is easy to write down.

    Row 0: prompt, judgment (label 2), interpretation (label 0), interpretation/EOS (label 1).
    Row 1: prompt, judgment (label 1), padding, padding.
    Position t predicts label t + 1, so the logits of the last position are unused.
    """
    import torch

    logits = torch.tensor([
        [[0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]],
        [[0.0, math.log(2.0), 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
    ])
    labels = torch.tensor([[-100, 2, 0, 1], [-100, 1, -100, -100]])
    segments = torch.tensor([[0, 1, 2, 2], [0, 1, 0, 0]])
    return logits, labels, segments


# By hand, with p = softmax of the logits one position earlier:
#   row 0 judgment: logits (0, 0, 0), label 2 -> -log(1/3) = log 3
#   row 0 interp 1: logits (log 3, 0, 0), label 0 -> p = 3 / 5 -> log(5 / 3)
#   row 0 interp 2: logits (0, 0, 0), label 1 -> log 3
#   row 1 judgment: logits (0, log 2, 0), label 1 -> p = 2 / 4 -> log 2
L_J = (math.log(3) + math.log(2)) / 2
L_I = (math.log(5 / 3) + math.log(3)) / 2


def test_lopsided_loss_matches_hand_computation():
    from ifas_model.loss import lopsided_lm_loss

    logits, labels, segments = _example()
    out = lopsided_lm_loss(logits, labels, segments, alpha=0.7)
    assert out.judgment.item() == pytest.approx(L_J, rel=1e-6)
    assert out.interpretation.item() == pytest.approx(L_I, rel=1e-6)
    assert out.loss.item() == pytest.approx(0.7 * L_J + 0.3 * L_I, rel=1e-6)
    # 0.7 * 0.895880 + 0.3 * 0.804719, written out
    assert out.loss.item() == pytest.approx(0.868532, abs=1e-5)


def test_plain_loss_is_the_mean_over_all_answer_tokens():
    from ifas_model.loss import lopsided_lm_loss

    logits, labels, segments = _example()
    out = lopsided_lm_loss(logits, labels, segments, alpha=0.7, loss_type="plain")
    expected = (math.log(3) + math.log(5 / 3) + math.log(3) + math.log(2)) / 4
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.judgment.item() == pytest.approx(L_J, rel=1e-6)  # parts still reported for logging
    # the plain loss needs no segments
    assert lopsided_lm_loss(logits, labels, None, 0.7, "plain").loss.item() == pytest.approx(expected, rel=1e-6)


def test_judgment_only_batch_is_the_judgment_loss():
    from ifas_model.loss import lopsided_lm_loss

    logits, labels, segments = _example()
    labels[0, 2:] = -100
    segments[0, 2:] = 0
    out = lopsided_lm_loss(logits, labels, segments, alpha=0.7)
    assert out.loss.item() == pytest.approx(L_J, rel=1e-6)
    assert out.interpretation.item() == 0.0


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_extreme_alpha_selects_one_part(alpha):
    from ifas_model.loss import lopsided_lm_loss

    logits, labels, segments = _example()
    out = lopsided_lm_loss(logits, labels, segments, alpha=alpha)
    assert out.loss.item() == pytest.approx(L_J if alpha == 1.0 else L_I, rel=1e-6)


def test_gradient_flows_and_weights_are_lopsided():
    import torch

    from ifas_model.loss import lopsided_lm_loss

    logits, labels, segments = _example()
    logits.requires_grad_(True)
    lopsided_lm_loss(logits, labels, segments, alpha=0.9).loss.backward()
    # judgment logits (row 0, position 0) get alpha / n_judgment = 0.45 of a softmax-minus-onehot
    expected = 0.45 * (torch.tensor([1 / 3, 1 / 3, 1 / 3]) - torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(logits.grad[0, 0], expected, atol=1e-6)
    assert logits.grad[0, 3].abs().sum() == 0  # the last position predicts nothing


def test_bad_inputs_are_errors():
    import torch

    from ifas_model.loss import LopsidedLMLoss, lopsided_lm_loss

    logits, labels, segments = _example()
    with pytest.raises(ValueError, match="answer_segments"):
        lopsided_lm_loss(logits, labels, None, 0.7)
    with pytest.raises(ValueError, match="alpha"):
        lopsided_lm_loss(logits, labels, segments, 1.2)
    with pytest.raises(ValueError, match="no judgment"):
        lopsided_lm_loss(logits, torch.full_like(labels, -100), segments, 0.7)
    module = LopsidedLMLoss(alpha=0.7)
    assert module(logits, labels, segments).loss.item() == pytest.approx(0.7 * L_J + 0.3 * L_I, rel=1e-6)
