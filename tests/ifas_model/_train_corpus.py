"""Test support for the trainer tests: a small VQA corpus built from the embedded synthetic sample.

The captions are fixed per attack type (no captioner runs), so the corpus is deterministic and cheap.
"""

from __future__ import annotations

from pathlib import Path

CAPTIONS = {
    "live": "a man with short hair in front of a wall",
    "print": "a printed paper photo of a face",
    "replay": "a face on a phone screen",
}
GENERAL_CAPTIONS = {
    "live": CAPTIONS["live"],
    "print": "a photo of a man",
    "replay": "a picture of a person",
}


def vqa_rows(split_rows: list[dict]) -> list[dict]:
    """Benchmark rows (image undecoded) -> VQA rows with fixed captions."""
    from scf.schema import QUESTION, compose_answer, interpretation_for, judgment_for

    out = []
    for row in split_rows:
        caption = CAPTIONS[row["attack_type"]]
        judgment = judgment_for(row["label"])
        interp = interpretation_for(caption)
        out.append({**row, "question": QUESTION, "judgment": judgment, "interpretation": interp,
                    "answer": compose_answer(judgment, interp), "caption": caption,
                    "caption_general": GENERAL_CAPTIONS[row["attack_type"]],
                    "captioner": "fixed-test-captions", "captioner_general": "fixed-test-captions",
                    "keyword": "" if row["label"] == 1 else row["attack_type"]})
    return out


def build_corpus(out: Path, *, corrupt_every: int = 0, splits: tuple[str, ...] = ("train", "test"),
                 max_rows: int | None = None) -> Path:
    """Write the sample as a VQA corpus (``save_to_disk`` folder) and return its path.

    Args:
        corrupt_every: replace the image bytes of every N-th training row by garbage (0: none).
        splits: which splits of the sample to write.
        max_rows: keep only the first rows of each split (a spread of labels is kept by striding).
    """
    import datasets

    from scf.sample import build_sample
    from scf.schema import vqa_features

    sample = build_sample(0)
    out_splits = {}
    for split in splits:
        rows = sample[split].cast_column("image", datasets.Image(decode=False)).to_list()
        if max_rows:
            step = max(1, len(rows) // max_rows)
            rows = rows[::step][:max_rows]
        rows = vqa_rows(rows)
        if corrupt_every and split == "train":
            for i in range(0, len(rows), corrupt_every):
                rows[i]["image"] = {"bytes": b"this is not an image", "path": None}
        out_splits[split] = datasets.Dataset.from_list(rows, features=vqa_features())
    datasets.DatasetDict(out_splits).save_to_disk(str(out))
    return out


def invoke_train(*args):
    """``ifas-train ARGS`` through click's test runner (exceptions propagate)."""
    from click.testing import CliRunner

    from ifas_model.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def error_line(result) -> str:
    """The one ``Error: ...`` line of a failed ``ifas-train`` (exit code 1, no traceback, the output's last line),
    its whitespace runs (a message wrapped by the terminal) joined to single spaces."""
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and result.output.rstrip().splitlines()[-1] == errors[0], result.output
    return " ".join(errors[0].split())


def tiny_run_args(corpus, out, *more) -> list:
    """The arguments of a 4-step tiny run on ``corpus`` into ``out`` that saves a checkpoint at every step."""
    return ["--dataset", corpus, "--preset", "tiny", "--out", out, "--max-steps", "4", "--batch-size", "4",
            "--eval-split", "none", "--save-every", "1", "--log-every", "1", *more]


def tiny_lora_config(corpus, out, **kw):
    """The `TrainConfig` of a 4-step tiny LoRA run (batch 4, dropout 0.1, cosine with warm-up, a line per step,
    a checkpoint every 2 steps) on ``corpus`` into ``out``; ``kw`` overrides any setting."""
    from ifas_model.training.config import resolve_config

    settings = {"dataset": str(corpus), "preset": "tiny", "output_dir": str(out), "batch_size": 4,
                "max_steps": 4, "save_every": 2, "eval_split": "none", "llm": "lora", "lora_dropout": 0.1,
                "schedule": "cosine", "warmup_ratio": 0.25, "log_every": 1}
    return resolve_config({**settings, **kw})


def poison_loss(trainer, at_call: int, factor: float) -> None:
    """Make the ``at_call``-th forward pass of ``trainer``'s model return its loss times ``factor`` (NaN or inf,
    as an overflow would), passing every other call through."""
    import torch

    model, calls = trainer.ddp, {"n": 0}

    class Poisoned(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, **inputs):
            out = self.inner(**inputs)
            calls["n"] += 1
            if calls["n"] == at_call:
                out.loss = out.loss * factor
            return out

    trainer.ddp = Poisoned()
