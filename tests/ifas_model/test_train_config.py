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


def test_yaml_numbers_written_the_natural_way_are_numbers(tmp_path):
    """PyYAML reads 1e-4 (no dot) as a string; the paper's values written that way must still work."""
    yaml_file = tmp_path / "paper.yaml"
    yaml_file.write_text("learning_rate: 1e-4\nweight_decay: 1e-2\nbatch_size: 8.0\nsources: [a, b]\n"
                         "max_steps: null\n")
    cfg = resolve_config({"dataset": "d"}, yaml_file)
    assert cfg.learning_rate == 0.0001 and isinstance(cfg.learning_rate, float)
    assert cfg.weight_decay == 0.01 and cfg.batch_size == 8 and isinstance(cfg.batch_size, int)
    assert cfg.sources == "a,b" and cfg.max_steps is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("learning_rate: abc\n", "learning_rate: expected a number, got 'abc'"),
        ("batch_size: [1]\n", "batch_size: expected an integer, got [1]"),
        ("batch_size: 2.5\n", "batch_size: expected an integer, got 2.5"),
        ("gac: maybe\n", "gac: expected true or false, got 'maybe'"),
        ("llm: null\n", "llm: expected a string, got null"),
        ("name: [unclosed\n", "not valid YAML"),
        ("learning_rate: -1\n", "config field 'learning_rate': must be > 0"),
    ],
)
def test_bad_yaml_values_name_the_file_and_the_field(tmp_path, text, needle):
    from ifas_model.training.config import ConfigError

    bad = tmp_path / "tc5.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve_config({"dataset": "d"}, bad)
    message = str(info.value)
    assert message.startswith(f"{bad}: ") and needle in message and "\n" not in message


def test_a_flag_overriding_a_bad_yaml_value_is_not_blamed_on_the_file(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("learning_rate: 0.1\n")
    with pytest.raises(ValueError, match="^config field 'learning_rate'"):
        resolve_config({"dataset": "d", "learning_rate": -1.0}, yaml_file)


def test_default_llm_is_full_at_the_papers_rate_and_lora_gets_1e_4_unless_given(tmp_path):
    from ifas_model.configuration import DEFAULT_LOPSIDED_ALPHA
    from ifas_model.training.config import DEFAULT_LOPSIDED_ALPHA as TRAIN_ALPHA

    assert TRAIN_ALPHA == DEFAULT_LOPSIDED_ALPHA
    paper = resolve_config({"dataset": "d"})
    assert (paper.llm, paper.learning_rate, paper.alpha) == ("full", 1e-5, 0.7)
    for mode in ("lora", "qlora"):
        cfg = resolve_config({"dataset": "d", "llm": mode})
        assert cfg.learning_rate == 1e-4 and "deviation" in cfg.learning_rate_note
    assert resolve_config({"dataset": "d", "llm": "frozen"}).learning_rate == 1e-5
    # a rate given explicitly (flag, YAML, preset) is kept
    assert resolve_config({"dataset": "d", "llm": "lora", "learning_rate": 2e-5}).learning_rate == 2e-5
    yaml_file = tmp_path / "lr.yaml"
    yaml_file.write_text("llm: lora\nlearning_rate: 1e-5\n")
    assert resolve_config({"dataset": "d"}, yaml_file).learning_rate == 1e-5
    tiny = resolve_config({"dataset": "d", "preset": "tiny", "llm": "lora"})
    assert tiny.learning_rate == TRAIN_PRESETS["tiny"]["learning_rate"] and tiny.learning_rate_note == ""
    assert resolve_config({"dataset": "d", "preset": "tiny"}).llm == "full"  # the tiny recipe is unchanged
    # config.yaml records the resolved values and says why the LoRA rate is not the paper's
    lora = resolve_config({"dataset": "d", "llm": "lora"})
    write_config(lora, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert text.startswith("# learning_rate 0.0001: the LoRA default") and "alpha: 0.7\n" in text
    assert "learning_rate: 0.0001\n" in text and "None" not in text.split("alpha")[1].splitlines()[0]
    assert TrainConfig(**read_yaml_config(tmp_path / "config.yaml")) == lora


def test_resume_check_reads_an_old_alpha_null_as_the_default():
    saved = {**TrainConfig(dataset="d").to_dict(), "alpha": None}
    assert resume_differences(saved, TrainConfig(dataset="d")) == []
    assert resume_differences(saved, TrainConfig(dataset="d", alpha=0.5)) == ["alpha"]


def test_global_batch_size_keeps_the_effective_batch_whatever_the_world_size():
    from ifas_model.training.config import ConfigError, TrainConfig, apply_global_batch

    def resolved(world: int, **kw) -> tuple[int, int]:
        c = apply_global_batch(TrainConfig(dataset="x", **kw), world)
        return c.batch_size, c.grad_accum

    assert resolved(8, global_batch_size=32) == (4, 1)  # the paper's 32 on 8 GPUs
    assert resolved(1, global_batch_size=32) == (32, 1)
    assert resolved(1, global_batch_size=32, batch_size=8) == (8, 4)  # memory-bound: accumulate
    assert resolved(2, global_batch_size=32, batch_size=6) == (4, 4)  # largest divisor of 16 that fits
    assert resolved(4, batch_size=8) == (8, 1)  # no global batch: unchanged
    saved = TrainConfig(dataset="x", global_batch_size=32, batch_size=8, grad_accum=4)  # a resolved config.yaml
    assert apply_global_batch(saved, 1) is saved
    with pytest.raises(ConfigError, match="not a multiple of the 3 training processes"):
        apply_global_batch(TrainConfig(dataset="x", global_batch_size=32), 3)
    with pytest.raises(ConfigError, match="give grad_accum or global_batch_size, not both"):
        apply_global_batch(TrainConfig(dataset="x", global_batch_size=32, grad_accum=2), 1)


def test_global_batch_keeps_the_learning_rate_note():
    from ifas_model.training.config import apply_global_batch, resolve_config

    config = resolve_config({"dataset": "x", "llm": "lora", "global_batch_size": 32})
    assert "LoRA default" in config.learning_rate_note
    assert apply_global_batch(config, 8).learning_rate_note == config.learning_rate_note


def test_every_default_in_the_help_is_the_resolved_default():
    """review22 L4: ifas-train's `[default: X]` texts are typed by hand (the flags have no click default, so that
    a YAML file can set them); each must be what a run without the flag resolves to."""
    import re

    from ifas_model.cli import main
    from ifas_model.training.config import TRAIN_PRESETS, resolve_config

    plain = resolve_config({"dataset": "org/x"}, None)
    lora = resolve_config({"dataset": "org/x", "llm": "lora"}, None)
    shown = {}
    for param in main.params:
        found = re.search(r"\[default: ([^\]]+)\]", getattr(param, "help", None) or "")
        if found:
            shown[param.name] = found.group(1)
    assert len(shown) >= 20
    special = {"learning_rate": f"{plain.learning_rate:.0e} (paper); {lora.learning_rate:.0e} with --llm lora/qlora",
               "sources": "every source" if plain.sources is None else None}
    for name, text in shown.items():
        value = getattr(plain, name)
        if name in special:
            assert text.replace("e-0", "e-") == special[name].replace("e-0", "e-"), name
        elif isinstance(value, float):
            assert float(text) == value, name
        else:
            assert text == str(value), name
    preset = next(p for p in main.params if p.name == "preset")
    assert list(preset.type.choices) == list(TRAIN_PRESETS)
