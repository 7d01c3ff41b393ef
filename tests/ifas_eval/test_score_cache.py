"""`ifas-eval` reuses cached score files only when the same weights and settings wrote them.

Review 5 #1: a retrained checkpoint at the same path (or one whose last two path components match) once got
the old model's cached scores, and the tables silently showed the old model's numbers.
"""

from __future__ import annotations

import csv
import json
import os
import shutil

import pytest
from click.testing import CliRunner

pytest.importorskip("ifas_model.inference", reason="ifas_model.inference not in tree")


def _save_tiny(path, seed: int) -> None:
    import torch

    from ifas_model.presets import build_model

    model, processor = build_model("tiny")  # deterministic: "retrain" = perturb the trainable weights by seed
    if seed:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    if path.exists():
        shutil.rmtree(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)


def _eval(ckpt, out, *extra):
    from ifas_eval.cli import main

    res = CliRunner().invoke(main, ["--protocol", "sample", "--setting", "sample-domain-a", "--checkpoint",
                                    f"sample-domain-a={ckpt}", "--out", str(out), "--no-report", "--json",
                                    "--batch-size", "16", *extra], env={"COLUMNS": "1000"})
    assert res.exit_code == 0, res.output
    folder = out / "scores" / "sample-domain-a" / "run-final"
    with (folder / "sample-domain-a.csv").open() as fh:
        scores = [float(r["score"]) for r in csv.DictReader(fh)]
    res.log = " ".join(res.stderr.split())  # the log lines, unwrapped
    return res, scores, json.loads((folder / "scored_with.json").read_text())


def test_retrained_weights_at_the_same_path_are_scored_again(tmp_path):
    ckpt = tmp_path / "run" / "final"
    out = tmp_path / "eval"
    _save_tiny(ckpt, seed=0)
    res, first, record = _eval(ckpt, out)
    assert record["dtype"] == "float32" and record["normalize"] == "vocab" and len(record["weights"]) == 64
    assert "model.safetensors" in record["files"] and "README.md" not in record["files"]

    # the same weights again: reused, and the output says so
    res, again, _ = _eval(ckpt, out)
    assert again == first
    assert "reusing score files computed with the same checkpoint files" in res.log

    # "retrained": other weights at the same path -> scored again, with a warning naming the changed file
    _save_tiny(ckpt, seed=1)
    res, second, record2 = _eval(ckpt, out)
    assert second != first and record2["weights"] != record["weights"]
    assert "written with other checkpoint files (model.safetensors" in res.log
    assert "reusing" not in res.log
    # the table is the new scores' table
    from ifas_model.metrics import flip_metrics

    doc = json.loads(res.stdout)
    with (out / "scores" / "sample-domain-a" / "run-final" / "sample-domain-a.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    m = flip_metrics([float(r["score"]) for r in rows], [int(r["label"]) for r in rows],
                     [r["video_id"] for r in rows])
    assert doc["results"][0]["auc"] == pytest.approx(m["auc"])

    # another folder whose last two components match ("other/run/final"), same bytes as the first model:
    # a copy keeps the fingerprint, but it is not the model that wrote the current files -> scored again
    other = tmp_path / "other" / "run" / "final"
    _save_tiny(other, seed=0)
    res, third, _ = _eval(other, out)
    assert third == pytest.approx(first, abs=1e-6)
    assert "scoring again" in res.log
    # an exact copy of that model (new path, new mtimes, same bytes) reuses them, naming the path they came from
    copy = tmp_path / "copy" / "run" / "final"
    shutil.copytree(other, copy)
    res, fourth, _ = _eval(copy, out)
    assert fourth == third and "reusing" in res.log and f"checkpoint then {other}" in res.log


def test_dtype_and_records_of_older_runs_are_part_of_the_key(tmp_path):
    ckpt = tmp_path / "run" / "final"
    out = tmp_path / "eval"
    _save_tiny(ckpt, seed=0)
    _, first, _ = _eval(ckpt, out)
    folder = out / "scores" / "sample-domain-a" / "run-final"
    # a bf16 run must not reuse the float32 scores (and the other way round)
    res, bf16, record = _eval(ckpt, out, "--dtype", "bf16")
    assert record["dtype"] == "bfloat16" and "dtype float32 (now bfloat16)" in res.log and bf16 != first
    # score files without a record (an older ifas-eval wrote them) are not trusted; nor is a torn partial file
    (folder / "scored_with.json").unlink()
    (folder / "sample-domain-a.csv").write_text("video_id,label,score\nx,1,0.5\n")
    (folder / "sample-domain-a.csv.partial").write_text("video_id,label,score\n")
    res, fresh, _ = _eval(ckpt, out)
    assert "no record of the model that wrote them" in res.log
    assert fresh == pytest.approx(first, abs=1e-6) and not (folder / "sample-domain-a.csv.partial").exists()


def test_fingerprint_skips_unchanged_files_and_ignores_the_model_card(tmp_path):
    from ifas_eval.scoring import checkpoint_fingerprint

    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"a" * 100)
    (folder / "config.json").write_text("{}")
    fp = checkpoint_fingerprint(folder)
    (folder / "README.md").write_text("a model card")
    assert checkpoint_fingerprint(folder)["sha256"] == fp["sha256"]
    # an unchanged (size, mtime) file takes its hash from the earlier result: not read again
    known = json.loads(json.dumps(fp["files"]))
    known["model.safetensors"]["sha256"] = "memo"
    assert checkpoint_fingerprint(folder, known)["files"]["model.safetensors"]["sha256"] == "memo"
    # same size, new content, new mtime: hashed again
    (folder / "model.safetensors").write_bytes(b"b" * 100)
    st = (folder / "model.safetensors").stat()
    os.utime(folder / "model.safetensors", ns=(st.st_atime_ns, known["model.safetensors"]["mtime_ns"] + 1000))
    assert checkpoint_fingerprint(folder, known)["sha256"] != fp["sha256"]
