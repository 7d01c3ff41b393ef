"""The model card of ifas-train's final/: what it says the run did to the LLM."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("llm", "says", "never"), [
    ("full", "every LLM weight was fine-tuned", "merged"),
    ("frozen", "the LLM was not trained", "merged"),
    ("lora", "LoRA adapters (rank 8) were trained and merged into the LLM weights", "4-bit"),
    ("qlora", "LoRA adapters (rank 8) were trained on a 4-bit NF4 base, then merged", "fine-tuned"),
])
def test_card_says_what_the_llm_mode_did(tmp_path, llm, says, never):
    from ifas_model.training.card import model_card
    from ifas_model.training.config import resolve_config

    config = resolve_config({"dataset": str(tmp_path / "corpus"), "preset": "tiny", "llm": llm, "lora_rank": 8})
    card = model_card(config.to_dict(), eval_metrics=None, eval_source="none", base_models=[],
                      parameter_counts={"trainable": 10, "frozen": 20}, steps=3, skipped_images=0)
    line = next(line for line in card.splitlines() if line.startswith("- LLM training:"))
    assert line.startswith(f"- LLM training: `{llm}` (") and says in line and never not in line
