"""Protocols: the built-in YAMLs parse, name the datasets the paper names, and user YAMLs are checked."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ifas_eval.cli import main
from ifas_eval.protocols import (
    DATASET_NAMES,
    ProtocolError,
    Selection,
    builtin_protocols,
    load_protocol,
)


def test_builtin_protocols_parse():
    names = [p.name for p in builtin_protocols()]
    assert names == ["mcio", "mcio-celeba", "one-to-eleven", "one-to-eleven-flip", "sample"]


def test_mcio_celeba_adds_flips_fourth_source_to_every_setting():
    base, celeba = load_protocol("mcio"), load_protocol("mcio-celeba")
    assert [s.name for s in celeba.settings] == [s.name for s in base.settings]
    for b, c in zip(base.settings, celeba.settings, strict=True):
        assert c.train == (*b.train, Selection("CelebA-Spoof", ("train",)))
        assert c.tests == b.tests and c.label == b.label


def test_one_to_eleven_flip_tests_the_mcio_targets_on_flips_union():
    (base,), (flip,) = load_protocol("one-to-eleven").settings, load_protocol("one-to-eleven-flip").settings
    assert flip.train == base.train
    mcio = {"MSU-MFSD": 280, "CASIA-FASD": 600, "Idiap Replay-Attack": 840, "OULU-NPU": 3600}
    for b, f in zip(base.tests, flip.tests, strict=True):
        assert b.name == f.name
        if b.name in mcio:
            assert b.parts[0].splits == ("test",) and f.parts[0].splits == ("train", "test")
            assert f.expected.videos == mcio[b.name] and b.expected.videos < f.expected.videos
        else:
            assert b == f


def test_protocol_comments_state_the_unstated_choices():
    from importlib.resources import files

    folder = files("ifas_eval") / "protocol_files"
    o2o = (folder / "one-to-eleven.yaml").read_text()
    assert "FLIP's MCIO test lists are NOT that split" in o2o and "`*_video_test.txt`" in o2o
    assert "40,000 real + 40,000 spoof" in o2o and "Rose-Youtu: its `test` split only" in o2o
    mcio = (folder / "mcio.yaml").read_text()
    assert "src4_data = 'celeb'" in mcio and "_frame0 only" in mcio and "does not say" in mcio


def test_mcio_is_leave_one_out_with_flip_splits():
    p = load_protocol("mcio")
    mcio = {"M": "MSU-MFSD", "C": "CASIA-FASD", "I": "Idiap Replay-Attack", "O": "OULU-NPU"}
    assert [s.name for s in p.settings] == ["M", "C", "I", "O"]
    for s in p.settings:
        target = mcio[s.name]
        assert [t.name for t in s.tests] == [target]
        # FLIP's test lists hold the whole target (train/ and test/ folders) minus the 5-shot videos
        assert s.tests[0].parts[0].splits == ("train", "test")
        assert {sel.source for sel in s.train} == set(mcio.values()) - {target}
        assert all(sel.splits == ("train", "test") for sel in s.train)  # FLIP's train lists: train + test
    assert [s.label for s in p.settings] == ["O&C&I->M", "O&M&I->C", "O&C&M->I", "I&C&M->O"]
    assert "test split only" not in p.description and "--exclude-videos" in p.description


def test_one_to_eleven_description_names_all_eleven_targets():
    p = load_protocol("one-to-eleven")
    for t in p.settings[0].tests:
        assert t.name in p.description, t.name


def test_one_to_eleven_trains_on_celeba_and_tests_eleven_targets():
    p = load_protocol("one-to-eleven")
    (s,) = p.settings
    assert [sel.source for sel in s.train] == ["CelebA-Spoof"]
    assert len(s.tests) == 11
    assert {t.name for t in s.tests} == set(DATASET_NAMES) - {"CelebA-Spoof"}


def test_sample_protocol_uses_the_sample_domains():
    from scf.sample import SAMPLE_SOURCES

    p = load_protocol("sample")
    assert p.default_data == "embedded-sample"
    assert {s.name for s in p.settings} == set(SAMPLE_SOURCES)
    for s in p.settings:
        assert s.name not in {sel.source for sel in s.train}


def test_user_protocol_file(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(
        "name: mine\nsettings:\n  - name: A\n    train: [{source: X, splits: [train]}]\n"
        "    dev: [{source: X, splits: [dev]}]\n"
        "    test:\n      - {source: Y, splits: [test]}\n"
        "      - name: both\n        from: [{source: Y, splits: [test]}, {source: Z, splits: [train, test]}]\n"
    )
    p = load_protocol(str(f))
    (s,) = p.settings
    assert [t.name for t in s.tests] == ["Y", "both"]
    assert s.tests[1].describe() == "Y [test] + Z [train+test]"
    assert s.dev[0].splits == ("dev",)
    assert p.sources() == ["X", "Y", "Z"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: x\nsettings: []\n", "'settings' must be a non-empty list"),
        ("name: x\nsetings: []\n", "unknown key"),
        ("name: x\nsettings:\n  - name: A\n    test: [{source: Y, splits: [val]}]\n", "split 'val' is not one of"),
        ("name: x\nsettings:\n  - name: A\n    test: [{source: Y}]\n", "'splits' must be a non-empty list"),
        ("name: x\nsettings:\n  - name: A\n    test: []\n", "settings\\[0\\].test must be a non-empty list"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_protocol_files(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ProtocolError, match=match):
        load_protocol(str(f))


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    """As ifas-train --config and scf caption --keywords: the problem and where it is, on one line."""
    f = tmp_path / "mine.yaml"
    f.write_text("name: x\nsettings:\n  - name: s\n    test: [{source: A, splits: [test]}\n    label: y\n")
    res = CliRunner().invoke(main, ["--protocol", str(f), "--checkpoint", "x"])
    assert res.exit_code == 1
    assert res.stderr.strip() == (f"Error: {f}: not valid YAML: expected ',' or ']', but got '<scalar>' (line 5, "
                                  "column 5)")
    f.write_bytes(b"\xff\xfe\x00binary")
    res = CliRunner().invoke(main, ["--protocol", str(f), "--checkpoint", "x"])
    assert res.exit_code == 1 and res.stderr.strip().startswith(f"Error: {f}: not a text file (")


def test_unknown_protocol_is_a_cli_error():
    res = CliRunner().invoke(main, ["--protocol", "nope", "--checkpoint", "x"])
    assert res.exit_code != 0 and "unknown protocol 'nope'" in res.stderr


def test_list_protocols():
    res = CliRunner().invoke(main, ["--list-protocols"])
    assert res.exit_code == 0, res.output
    for word in ("mcio", "one-to-eleven", "sample", "O&C&I->M", "CelebA-Spoof [train]", "HiFiMask [test]",
                 "OULU-NPU [train+test]", "MSU-MFSD [train+test]", "--exclude-videos"):
        assert word in res.stdout
    # MSU-MFSD is train+test in three MCIO settings' training and in setting M's test set (FLIP's lists),
    # the same in mcio-celeba, and a test set of one-to-eleven-flip
    assert res.stdout.count("MSU-MFSD [train+test]") == 9
    assert "mcio-celeba" in res.stdout and "one-to-eleven-flip" in res.stdout


def test_source_names_agree_with_scf_ingest():
    """The protocol source names must be those `scf ingest` writes (the `source` column is a reader's title)."""
    from scf.ingest.readers import DATASET_READERS

    missing = set(DATASET_NAMES) - {r.title for r in DATASET_READERS}
    assert not missing, f"protocol sources not written by scf ingest: {sorted(missing)}"


def test_train_commands_never_suggest_excluding_a_training_source(tmp_path):
    """An intra-dataset YAML protocol (train on MyData's train split, test on its test split): the # line must not
    suggest --finetune-exclude-sources MyData, which would leave C_S's D_S empty when MyData is the only source."""
    from click.testing import CliRunner

    from ifas_eval.cli import main

    f = tmp_path / "mine.yaml"
    f.write_text("name: mine\nsettings:\n  - name: mydata\n    train: [{source: MyData, splits: [train]}]\n"
                 "    test: [{source: MyData, splits: [test]}, {source: Other, splits: [test]}]\n"
                 "  - name: intra\n    train: [{source: MyData, splits: [train]}]\n"
                 "    test: [{source: MyData, splits: [test]}]\n")
    res = CliRunner().invoke(main, ["--protocol", str(f), "--train-commands"])
    assert res.exit_code == 0, res.output
    hints = [line for line in res.output.splitlines() if line.startswith("# ") and "then, on" not in line]
    assert hints == [
        "# mydata: the corpus's C_S saw every dataset's fakes (the paper pools them); for one that never saw the "
        "targets: scf caption ... --finetune-exclude-sources Other (MyData not listed: the setting trains on it)",
        "# intra: its test sources (MyData) are training sources too (intra-dataset): no scf caption "
        "--finetune-exclude-sources to suggest (leaving them out of C_S's fine-tuning would leave D_S without "
        "their fakes, empty when they are the corpus's only sources)"]


def test_train_commands_name_each_settings_sources_splits_and_seeds():
    from click.testing import CliRunner

    from ifas_eval.cli import main

    result = CliRunner().invoke(main, ["--protocol", "mcio", "--train-commands", "--data", "/d/corpus",
                                       "--setting", "O"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == [
        "# O: the corpus's C_S saw every dataset's fakes (the paper pools them); for one that never saw the "
        "targets: scf caption ... --finetune-exclude-sources OULU-NPU",
        *(f"ifas-train --dataset /d/corpus --sources 'Idiap Replay-Attack,CASIA-FASD,MSU-MFSD' "
          f"--train-split train,test --seed {k} --output runs/mcio-O-s{k}" for k in (0, 1, 2)),
        "# then, on the benchmark (mean ± std over seeds 0, 1, 2):",
        "ifas-eval --protocol mcio --data BENCHMARK --setting O --checkpoint O=runs/mcio-O-s0/final "
        "--checkpoint O=runs/mcio-O-s1/final --checkpoint O=runs/mcio-O-s2/final"]
    bad = CliRunner().invoke(main, ["--protocol", "mcio", "--train-commands", "--setting", "X"])
    assert bad.exit_code != 0 and "no setting 'X'" in bad.output


def test_train_commands_with_mixed_splits_give_the_narrower_source_its_splits():
    lines = load_protocol("mcio-celeba").train_commands("M", "/c")
    assert len(lines) == 3 and all("--sources 'OULU-NPU,CASIA-FASD,Idiap Replay-Attack,CelebA-Spoof:train' "
                                   "--train-split train,test" in x for x in lines)


def test_printed_eval_line_evaluates_the_printed_runs(tiny_ckpt, tmp_path, monkeypatch):
    """Run folders named as the train commands name them, evaluated with the printed ifas-eval line."""
    import json
    import shlex
    import shutil

    from click.testing import CliRunner

    from ifas_eval.cli import main

    res = CliRunner().invoke(main, ["--protocol", "sample", "--train-commands", "--setting", "sample-domain-a"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    outputs = [shlex.split(x)[shlex.split(x).index("--output") + 1] for x in lines if x.startswith("ifas-train")]
    assert outputs == [f"runs/sample-sample-domain-a-s{k}" for k in (0, 1, 2)]
    monkeypatch.chdir(tmp_path)
    for out in outputs:
        shutil.copytree(tiny_ckpt, tmp_path / out / "final")
    argv = shlex.split(lines[-1])
    assert argv[0] == "ifas-eval"
    argv = argv[1:]
    i = argv.index("--data")
    del argv[i:i + 2]  # the sample protocol's default data is the embedded sample
    res = CliRunner().invoke(main, [*argv, "--out", "e", "--no-report", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert sorted(r["seed_index"] for r in doc["results"]) == [0, 1, 2]
    assert " ± " in (tmp_path / "e" / "results.md").read_text()  # three seeds -> mean ± std per cell


def test_readme_run_names_and_torchrun_batches_match_the_printed_commands():
    """README's training and evaluation lines use the run folders --train-commands prints; torchrun keeps 32."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    printed = {line.split("--output ")[1] for p in ("mcio", "one-to-eleven") for s in load_protocol(p).settings
               for line in load_protocol(p).train_commands(s.name) if line.startswith("ifas-train")}
    outputs = re.findall(r"ifas-train\)? .*--output (\S+)", readme)
    assert outputs and set(outputs) <= printed, outputs
    used = set(re.findall(r"(runs/[\w.+-]+)/final", readme))
    assert used and used <= printed, used - printed
    for doc in (readme, (root / "docs" / "training.md").read_text()):
        for line in (x for x in doc.splitlines() if x.startswith("torchrun --nproc_per_node 8")):
            assert "--batch-size 4" in line or "--global-batch-size 32" in line, line


def test_hkbu_test_set_takes_v1plus_or_v2_rows():
    """scf ingest writes HKBU-MARs-V2 for the V2 lists; Protocol 2's HKBU column takes either release."""
    for name in ("one-to-eleven", "one-to-eleven-flip"):
        (s,) = load_protocol(name).settings
        hkbu = next(t for t in s.tests if t.name == "HKBU-MARs-V1+")
        assert {sel.source for sel in hkbu.parts} == {"HKBU-MARs-V1+", "HKBU-MARs-V2"}
