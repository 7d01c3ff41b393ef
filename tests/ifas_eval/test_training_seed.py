"""The training seed of each checkpoint in results.csv/json (review21 L2): read from ifas-train's model card or
the run's config.yaml, never guessed from the checkpoint's position on the command line (``seed_index``)."""

from __future__ import annotations

import csv
import json
import logging
import shutil

import pytest
from click.testing import CliRunner


def _run(tmp_path, tiny_ckpt, name, seed, *, card=False, config=False):
    """A run folder like ifas-train's: ``<run>/final`` (the tiny weights), its card and/or ``<run>/config.yaml``,
    written by ifas-train's own writers."""
    from ifas_model.training.card import model_card
    from ifas_model.training.config import TrainConfig, write_config

    run = tmp_path / name
    shutil.copytree(tiny_ckpt, run / "final")
    cfg = TrainConfig(dataset=str(tmp_path / "corpus"), preset="tiny", seed=seed, output_dir=str(run))
    if config:
        write_config(cfg, run / "config.yaml")
    if card:
        (run / "final" / "README.md").write_text(model_card(
            cfg.to_dict(), eval_metrics=None, eval_source="", base_models=[], parameter_counts={}, steps=1,
            skipped_images=0))
    return run


def test_training_seed_from_card_config_or_unknown(tiny_ckpt, tmp_path, caplog):
    from ifas_eval.scoring import training_seed

    a = _run(tmp_path, tiny_ckpt, "a", 3, card=True)
    assert training_seed(str(a / "final")) == (3, str((a / "final" / "README.md").resolve()))
    b = _run(tmp_path, tiny_ckpt, "b", 1, config=True)
    assert training_seed(str(b / "final")) == (1, str((b / "config.yaml").resolve()))
    step = b / "checkpoints" / "step-00000010"
    step.mkdir(parents=True)
    assert training_seed(str(step))[0] == 1  # <run>/checkpoints/step-N reads <run>/config.yaml
    # a folder saved with save_pretrained alone, an uncached Hub id: unknown, not 0
    assert training_seed(str(tiny_ckpt)) == (None, None)
    assert training_seed("nobody-org/not-cached-anywhere") == (None, None)
    # a config.yaml that is not an ifas-train run's is not read as one
    c = tmp_path / "c"
    shutil.copytree(tiny_ckpt, c / "final")
    (c / "config.yaml").write_text("seed: 7\nsomething: else\n")
    assert training_seed(str(c / "final")) == (None, None)
    # card and config disagree (final/ copied next to another run's config.yaml): the card's, with a warning
    d = _run(tmp_path, tiny_ckpt, "d", 5, card=True)
    shutil.copy(b / "config.yaml", d / "config.yaml")
    with caplog.at_level(logging.WARNING, logger="ifas_eval.scoring"):
        assert training_seed(str(d / "final"))[0] == 5
    assert "says seed 5" in caplog.text and "says seed 1" in caplog.text
    # a damaged config.yaml: one warning naming it, seed unknown, no traceback
    caplog.clear()
    (b / "config.yaml").write_text("seed: [1\n")
    with caplog.at_level(logging.WARNING, logger="ifas_eval.scoring"):
        assert training_seed(str(b / "final")) == (None, None)
    assert "config.yaml: not readable" in caplog.text


def test_results_record_the_real_seed_and_warn_about_a_repeated_one(tiny_ckpt, tmp_path):
    """Checkpoints given as s2, s1, s2-again: seed_index is 0, 1, 2 (positions), seed is 2, 1, 2, and the
    repeated seed is warned about in one line."""
    from ifas_eval.cli import main

    s2 = _run(tmp_path, tiny_ckpt, "run-s2", 2, card=True, config=True)
    s1 = _run(tmp_path, tiny_ckpt, "run-s1", 1, config=True)
    same = _run(tmp_path, tiny_ckpt, "run-s2-again", 2, card=True)
    plain = tiny_ckpt  # no card, no config.yaml: seed unknown
    out = tmp_path / "eval"
    res = CliRunner().invoke(main, ["--protocol", "sample", "--setting", "sample-domain-c", "--no-report",
                                    "--out", str(out), "--batch-size", "16",
                                    *[f"--checkpoint={p / 'final'}" for p in (s2, s1, same)],
                                    f"--checkpoint={plain}"])
    assert res.exit_code == 0, res.output
    log = "".join(res.stderr.split())  # rich wraps log lines (even inside paths)
    assert log.count("werealltrainedwithseed") == 1, res.stderr  # "checkpoints A, B were all trained with seed 2"
    assert "run-s2-again/finalwerealltrainedwithseed2" in log and "run-s1/finalwere" not in log
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["seed_index"], r["seed"]) for r in rows] == [("0", "2"), ("1", "1"), ("2", "2"), ("3", "")]
    doc = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in doc["results"]] == [2, 1, 2, None]
    assert doc["results"][1]["seed_source"].endswith("run-s1/config.yaml")
    assert doc["results"][0]["seed_source"].endswith("run-s2/final/README.md")


def test_distinct_seeds_give_no_warning_and_curve_labels_use_them():
    from ifas_eval.metrics import ScoreSet
    from ifas_eval.runner import Scored, _curve_label, warn_repeated_seeds

    seeds = {"r/s0/final": (0, "x"), "r/s1/final": (1, "y"), "hub/model": (None, None), "r/s0b/final": (0, "z")}
    assert warn_repeated_seeds({"M": ["r/s0/final", "r/s1/final", "hub/model"]}, seeds) == []
    lines = warn_repeated_seeds({"M": ["r/s0/final", "r/s0b/final"], "C": ["r/s1/final"]}, seeds)
    assert len(lines) == 1 and lines[0].startswith("setting M:") and "seed 0" in lines[0]
    ss = ScoreSet("t", [0.9, 0.1], [1, 0], ["a", "b"])
    assert _curve_label(Scored(None, "runs/mcio-M-s2/final", 0, ss, {}, seed=2)) == "seed 2: mcio-M-s2/final"
    assert _curve_label(Scored(None, "org/model", 1, ss, {})) == "#1 (seed unknown): org/model"


def test_score_files_have_no_seed(tmp_path):
    from ifas_eval.cli import main
    from ifas_eval.metrics import ScoreSet
    from ifas_eval.scorefile import write_scores

    f = tmp_path / "m.csv"
    write_scores(f, ScoreSet("m", [0.9, 0.1, 0.8, 0.2], [1, 0, 1, 0], ["v1", "v2", "v3", "v4"]))
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["--scores", f"m={f}", "--out", str(out), "--no-report"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert rows[0]["seed_index"] == "0" and rows[0]["seed"] == ""


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
