"""TrainConfig: paper defaults, precedence defaults < preset < YAML < flags, validation, resume checks."""

from __future__ import annotations

import pytest

from ifas_model.training.config import (
    TRAIN_PRESETS,
    TrainConfig,
    read_yaml_config,
    resolve_config,
    resume_differences,
    write_config,
)


def test_defaults_are_the_paper_recipe():
    cfg = TrainConfig(dataset="org/fas-vqa")
    assert (cfg.learning_rate, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (1e-5, 1e-2, 32, 10)
    assert cfg.loss == "lopsided" and cfg.answers == "full" and cfg.gac


def test_precedence_defaults_preset_yaml_flags(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("preset: tiny\nbatch-size: 4\nlearning_rate: 0.002\nseed: 7\n")
    cfg = resolve_config({"dataset": "d", "seed": 3, "epochs": None}, yaml_file)
    assert cfg.preset == "tiny"
    assert cfg.batch_size == 4  # YAML over preset (tiny: 32)
    assert cfg.learning_rate == 0.002  # YAML over preset
    assert cfg.seed == 3  # flag over YAML
    assert cfg.epochs == TRAIN_PRESETS["tiny"]["epochs"]  # preset over default; None flag ignored
    assert cfg.weight_decay == TRAIN_PRESETS["tiny"]["weight_decay"]
    assert cfg.max_grad_norm == TrainConfig.max_grad_norm  # default


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = resolve_config({"dataset": "d", "preset": "tiny", "alpha": 0.5, "eval_split": "none"})
    write_config(cfg, tmp_path / "config.yaml")
    again = TrainConfig(**read_yaml_config(tmp_path / "config.yaml"))
    assert again == cfg


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"llm": "half"}, "'llm'"),
        ({"alpha": 1.5}, "'alpha'"),
        ({"batch_size": 0}, "'batch_size'"),
        ({"answers": "captions"}, "'answers'"),
        ({"push_to_hub": "no-slash"}, "'push_to_hub'"),
        ({"dataset": ""}, "'dataset'"),
        ({"preset": "tiny", "vision_model": "x"}, "vision_model"),
    ],
)
def test_validation_names_the_field(settings, needle):
    with pytest.raises(ValueError, match=needle):
        TrainConfig(**{"dataset": "d", **settings})


def test_unknown_yaml_key_and_unknown_preset_are_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: d\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown setting 'learning_rat'"):
        resolve_config({}, bad)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        resolve_config({"dataset": "d", "preset": "huge"})
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        resolve_config({"dataset": "d"}, tmp_path / "missing.yaml")
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        resolve_config({}, not_mapping)


def test_resume_differences_ignore_bookkeeping_fields():
    saved = TrainConfig(dataset="d", preset="tiny").to_dict()
    assert resume_differences(saved, TrainConfig(dataset="other/path", preset="tiny", save_every=3)) == []
    assert resume_differences(saved, TrainConfig(dataset="d", preset="tiny", learning_rate=0.5)) == ["learning_rate"]
