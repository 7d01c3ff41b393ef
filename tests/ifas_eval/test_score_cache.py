"""`ifas-eval` reuses cached score files only when the same weights and settings wrote them.

Review 5 #1: a retrained checkpoint at the same path (or one whose last two path components match) once got
the old model's cached scores, and the tables silently showed the old model's numbers.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner


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
    score_file = Path(json.loads(res.stdout)["results"][0]["score_file"])
    with score_file.open() as fh:
        scores = [float(r["score"]) for r in csv.DictReader(fh)]
    res.log = " ".join(res.stderr.split())  # the log lines, unwrapped
    res.folder = score_file.parent.name
    return res, scores, json.loads((score_file.parent / "scored_with.json").read_text())


def _scored_once(tmp_path):
    """A tiny checkpoint at run/final scored once into eval/: (checkpoint, --out, scores, score folder)."""
    ckpt = tmp_path / "run" / "final"
    out = tmp_path / "eval"
    _save_tiny(ckpt, seed=0)
    _, first, _ = _eval(ckpt, out)
    return ckpt, out, first, out / "scores" / "sample-domain-a" / "run-final"


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

    assert res.folder == "run-final"

    # another folder whose last two components match ("other/run/final", the first model's bytes): run-final
    # holds another checkpoint's scores, which are kept; this one is scored into the next free folder
    other = tmp_path / "other" / "run" / "final"
    _save_tiny(other, seed=0)
    res, third, _ = _eval(other, out)
    assert res.folder == "run-final-2" and "reusing" not in res.log
    assert third == pytest.approx(first, abs=1e-6)
    with (out / "scores" / "sample-domain-a" / "run-final" / "sample-domain-a.csv").open() as fh:
        assert [float(r["score"]) for r in csv.DictReader(fh)] == second
    # an exact copy of that model (new path, new mtimes, same bytes) reuses them, naming the path they came from
    copy = tmp_path / "copy" / "run" / "final"
    shutil.copytree(other, copy)
    res, fourth, _ = _eval(copy, out)
    assert res.folder == "run-final-2"
    assert fourth == third and "reusing" in res.log and f"checkpoint then {other}" in res.log
    # and the retrained model at the first path still finds its own scores
    res, again2, _ = _eval(ckpt, out)
    assert res.folder == "run-final" and again2 == second and "reusing" in res.log


def test_dtype_and_records_of_older_runs_are_part_of_the_key(tmp_path):
    ckpt, out, first, folder = _scored_once(tmp_path)
    # a bf16 run must not reuse the float32 scores, nor delete them: it gets its own folder
    res, bf16, record = _eval(ckpt, out, "--dtype", "bf16")
    assert record["dtype"] == "bfloat16" and res.folder == "run-final-2" and bf16 != first
    res, again, _ = _eval(ckpt, out)
    assert res.folder == "run-final" and again == first and "reusing" in res.log
    # score files without a record (an older ifas-eval wrote them) are not trusted, and not deleted either
    (folder / "scored_with.json").unlink()
    (folder / "sample-domain-a.csv").write_text("video_id,label,score\nx,1,0.5\n")
    res, fresh, _ = _eval(ckpt, out)
    assert res.folder == "run-final-3" and "reusing" not in res.log
    assert fresh == pytest.approx(first, abs=1e-6) and (folder / "sample-domain-a.csv").exists()


def test_a_torn_partial_file_of_a_changed_checkpoint_is_not_resumed(tmp_path):
    ckpt, out, first, folder = _scored_once(tmp_path)
    (folder / "sample-domain-a.csv").unlink()
    (folder / "sample-domain-a.csv.partial").write_text("video_id,label,score\n")
    _save_tiny(ckpt, seed=1)  # retrained in place: the old partial file is not continued
    res, second, _ = _eval(ckpt, out)
    assert res.folder == "run-final" and "written with other checkpoint files" in res.log
    assert second != first and not (folder / "sample-domain-a.csv.partial").exists()


def test_a_later_run_with_some_of_the_checkpoints_reuses_their_folders(tmp_path):
    """Review 7 #1: run 1 scores A and B (same last path components), run 2 only B: B's scores are reused and
    A's are kept (they were once deleted because B got A's folder name)."""
    a, b = tmp_path / "a" / "run" / "final", tmp_path / "b" / "run" / "final"
    _save_tiny(a, seed=0)
    _save_tiny(b, seed=2)
    out = tmp_path / "eval"
    from ifas_eval.cli import main

    res = CliRunner().invoke(main, ["--protocol", "sample", "--setting", "sample-domain-a", "--checkpoint",
                                    f"sample-domain-a={a}", "--checkpoint", f"sample-domain-a={b}", "--out",
                                    str(out), "--no-report", "--json", "--batch-size", "16"])
    assert res.exit_code == 0, res.output
    files = {r["checkpoint"]: Path(r["score_file"]) for r in json.loads(res.stdout)["results"]}
    assert files[str(a)].parent.name == "run-final" and files[str(b)].parent.name == "run-final-2"
    res, b_scores, _ = _eval(b, out)
    assert res.folder == "run-final-2" and "reusing" in res.log
    res, a_scores, _ = _eval(a, out)
    assert res.folder == "run-final" and "reusing" in res.log and a_scores != b_scores


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


def test_a_checkpoint_hashed_once_is_not_read_again_for_another_out(tmp_path, monkeypatch):
    """Review 7 #6: the per-user hash cache (keyed by resolved path, size and mtime) spares a full reread of a
    multi-GB checkpoint for every new --out; a changed file is hashed again."""
    import hashlib

    from ifas_eval import scoring

    monkeypatch.setenv("IFAS_EVAL_CACHE", str(tmp_path / "cache"))
    # review 9 H2: Python 3.10 (declared) has no hashlib.file_digest; files are hashed in chunks by hand
    monkeypatch.delattr(hashlib, "file_digest", raising=False)
    folder = tmp_path / "ck"
    folder.mkdir()
    weights = os.urandom(1000) * 2600  # 2.6 MB: more than one 1 MiB chunk
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "config.json").write_text("{}")
    first = scoring.checkpoint_fingerprint(folder)
    assert first["files"]["model.safetensors"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert scoring.hash_cache_path() == tmp_path / "cache" / "fingerprints.json"
    assert str((folder / "model.safetensors").resolve()) in json.loads(scoring.hash_cache_path().read_text())

    def no_reading(*args, **kwargs):
        raise AssertionError("a file was hashed again")

    monkeypatch.setattr(scoring, "_sha256_file", no_reading)
    assert scoring.checkpoint_fingerprint(folder) == first  # no `known`: every hash from the cache
    monkeypatch.undo()
    monkeypatch.setenv("IFAS_EVAL_CACHE", str(tmp_path / "cache"))
    (folder / "config.json").write_text('{"a": 1}')
    assert scoring.checkpoint_fingerprint(folder)["sha256"] != first["sha256"]
    # an unreadable cache is only a cache: hashes are computed again
    scoring.hash_cache_path().write_text("{torn")
    assert scoring.checkpoint_fingerprint(folder)["files"]["model.safetensors"] == first["files"]["model.safetensors"]
