"""The Lopsided LM loss (paper eq. 4): the judgment and the interpretation tokens are averaged separately.

    L = alpha * L_judgment + (1 - alpha) * L_interpretation

Rationale (paper, "Training with Lopsided LM Loss"): the interpretations are machine captions and noisy; a
plain LM loss averages over all answer tokens, so the one judgment token ("Yes"/"No") is drowned by the ten
to thirty caption tokens. Averaging each part on its own and weighting the judgment by alpha > 0.5 makes the
judgment dominate the gradient, which the paper reports speeds up and stabilises convergence (Figure 5).

Choices the paper leaves open, made here:

* Each part is averaged over **all of its tokens in the batch** (not per sample, then over samples). Every
  sample has exactly one judgment token, so L_judgment is the same either way; for L_interpretation this
  weights long interpretations more, as the ordinary LM loss does.
* A batch with no interpretation tokens (a judgment-only corpus, the paper's "without SCF" ablation) gives
  L = L_judgment, not alpha * L_judgment: the weight only balances two parts when both exist. Symmetrically a
  batch with interpretation tokens but no judgment token gives L = L_interpretation.
* ``loss_type="plain"`` is the ordinary causal LM loss, the mean over all answer tokens (the paper's ablation).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label value that contributes no loss (prompt, padding, visual tokens); the PyTorch/HF convention."""
SEGMENT_NONE, SEGMENT_JUDGMENT, SEGMENT_INTERPRETATION = 0, 1, 2
"""Values of `answer_segments`: not part of the answer, the judgment token, the interpretation (incl. EOS)."""


class LopsidedLoss(NamedTuple):
    """The total loss and its two parts (each the mean over that part's tokens; 0 when the batch has none)."""

    loss: torch.Tensor
    judgment: torch.Tensor
    interpretation: torch.Tensor


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean of `values` where `mask`, and the count; 0 (kept in the graph) when nothing is selected."""
    count = int(mask.sum())
    if count == 0:
        return values.sum() * 0.0, 0
    return values[mask].sum() / count, count


def lopsided_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    answer_segments: torch.Tensor | None,
    alpha: float,
    loss_type: str = "lopsided",
    ignore_index: int = IGNORE_INDEX,
) -> LopsidedLoss:
    """The Lopsided LM loss of paper eq. 4 (or the plain LM loss), for a causal LM.

    Args:
        logits: (B, T, V) next-token logits aligned with `labels` (logits[:, t] predicts token t + 1).
        labels: (B, T) token ids, `ignore_index` where no loss is taken (prompt, padding).
        answer_segments: (B, T) 0 = not answer, 1 = judgment, 2 = interpretation (see `IFASProcessor`).
            May be None only for ``loss_type="plain"``.
        alpha: weight of the judgment part, in [0, 1].
        loss_type: "lopsided" (eq. 4) or "plain" (mean over all labelled tokens).
        ignore_index: label value that is skipped.

    Returns:
        `LopsidedLoss(loss, judgment, interpretation)`. The two parts are always reported (for logging), also
        for the plain loss.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} are not aligned")
    if answer_segments is not None and answer_segments.shape != labels.shape:
        raise ValueError(
            f"answer_segments {tuple(answer_segments.shape)} and labels {tuple(labels.shape)} differ in shape"
        )
    # Shift as a causal LM: the logits at position t are scored against the label at t + 1; then the token
    # loss of the labelled positions, as the fast path computes it.
    vocab = logits.shape[-1]
    return lopsided_token_loss(
        logits[:, :-1, :].reshape(-1, vocab),  # (B * (T - 1), V)
        labels[:, 1:].reshape(-1),
        None if answer_segments is None else answer_segments[:, 1:].reshape(-1),
        alpha, loss_type, ignore_index,
    )


def _combine(token_loss: torch.Tensor, labelled: torch.Tensor, judgment_mask: torch.Tensor,
             interpretation_mask: torch.Tensor, alpha: float, loss_type: str) -> LopsidedLoss:
    """Eq. 4 (or the plain mean) from per-token losses and the masks of the labelled / judgment / interpretation tokens."""
    judgment, n_judgment = _masked_mean(token_loss, judgment_mask)
    interpretation, n_interpretation = _masked_mean(token_loss, interpretation_mask)

    if loss_type == "plain":
        if int(labelled.sum()) == 0:
            raise ValueError("the batch has no labelled tokens (all labels are ignore_index)")
        loss, _ = _masked_mean(token_loss, labelled)
    elif n_judgment and n_interpretation:
        loss = alpha * judgment + (1.0 - alpha) * interpretation
    elif n_judgment:
        loss = judgment  # judgment-only batch (no SCF interpretations)
    elif n_interpretation:
        loss = interpretation
    else:
        raise ValueError("the batch has no judgment and no interpretation tokens to train on")
    return LopsidedLoss(loss=loss, judgment=judgment, interpretation=interpretation)


def lopsided_token_loss(
    token_logits: torch.Tensor,
    token_labels: torch.Tensor,
    token_segments: torch.Tensor | None,
    alpha: float,
    loss_type: str = "lopsided",
    ignore_index: int = IGNORE_INDEX,
) -> LopsidedLoss:
    """`lopsided_lm_loss` on the labelled tokens alone, already gathered and shifted (the fast training path).

    The model gathers the hidden states whose next token has a label and runs the LM head there only, so the
    (B, T, V) logits are never built; the loss equals `lopsided_lm_loss` on the full logits.

    Args:
        token_logits: (N, V) logits at the positions that predict a labelled token.
        token_labels: (N,) the labels they predict.
        token_segments: (N,) 1 = judgment, 2 = interpretation; None only for ``loss_type="plain"``.
        alpha: weight of the judgment part, in [0, 1].
        loss_type: "lopsided" or "plain".
        ignore_index: label value that is skipped.

    Returns:
        `LopsidedLoss(loss, judgment, interpretation)`.
    """
    if loss_type not in ("lopsided", "plain"):
        raise ValueError(f"loss_type must be 'lopsided' or 'plain', got {loss_type!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    token_labels = token_labels.to(token_logits.device)
    token_loss = F.cross_entropy(token_logits.float(), token_labels, ignore_index=ignore_index, reduction="none")
    labelled = token_labels != ignore_index
    if token_segments is None:
        if loss_type == "lopsided":
            raise ValueError("the lopsided loss needs answer_segments (1 = judgment, 2 = interpretation)")
        judgment_mask = interpretation_mask = torch.zeros_like(labelled)
    else:
        token_segments = token_segments.to(token_logits.device)
        judgment_mask = labelled & (token_segments == SEGMENT_JUDGMENT)
        interpretation_mask = labelled & (token_segments == SEGMENT_INTERPRETATION)
    return _combine(token_loss, labelled, judgment_mask, interpretation_mask, alpha, loss_type)


class LopsidedLMLoss(torch.nn.Module):
    """`lopsided_lm_loss` as a module holding alpha and the loss type (torchtune style)."""

    def __init__(self, alpha: float, loss_type: str = "lopsided", ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.alpha, self.loss_type, self.ignore_index = float(alpha), loss_type, ignore_index

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, answer_segments: torch.Tensor | None
    ) -> LopsidedLoss:
        """See `lopsided_lm_loss`."""
        return lopsided_lm_loss(logits, labels, answer_segments, self.alpha, self.loss_type, self.ignore_index)
