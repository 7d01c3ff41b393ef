"""`ifas-eval --scores`: JSON output, side-by-side comparison, report, and one-line errors on bad CSVs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from ifas_eval.cli import main


def _write(path, rows, header="video_id,label,score,attack_type,frame"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def _scores(tmp_path, name="s", seed=0, n=40):
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(n):
        label = int(v % 3 == 0)
        attack = "live" if label else ("print" if v % 2 else "replay")
        base = rng.beta(5, 2) if label else rng.beta(2, 4)
        for f in range(2):
            rows.append((f"vid{v}", label, round(float(np.clip(base + rng.normal(0, 0.05), 0, 1)), 4), attack, f))
    return _write(tmp_path / f"{name}.csv", rows), rows


def test_json_output_matches_sklearn_on_video_means(tmp_path):
    path, rows = _scores(tmp_path)
    res = CliRunner().invoke(main, ["--scores", str(path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in ("auc", "eer", "hter", "threshold", "tpr_at_fpr_1pct"):
        assert 0.0 <= out[key] <= 1.0, key
    assert out["convention"] == "flip-ssdg"
    videos = {}
    for v, y, s, _, _ in rows:
        videos.setdefault(v, (y, []))[1].append(s)
    y = [lab for lab, _ in videos.values()]
    s = [np.mean(sc) for _, sc in videos.values()]
    assert out["auc"] == pytest.approx(roc_auc_score(y, s))
    assert out["n_samples"] == 40 and out["n_frames"] == 80
    assert set(out["iso"]["apcer_per_type"]) == {"print", "replay"}


def test_several_files_side_by_side_and_outputs(tmp_path):
    a, _ = _scores(tmp_path, "a", 0)
    b, _ = _scores(tmp_path, "b", 1)
    out_dir, report = tmp_path / "out", tmp_path / "report"
    res = CliRunner().invoke(main, ["--scores", f"ours={a}", "--scores", f"theirs={b}", "--out", str(out_dir),
                                    "--report", str(report), "--threshold", "0.6"])
    assert res.exit_code == 0, res.output
    assert "ours" in res.stdout and "theirs" in res.stdout and "[flip-ssdg] FLIP/SSDG" in res.stdout
    doc = json.loads((out_dir / "results.json").read_text())
    assert [r["test_set"] for r in doc["results"]] == ["ours", "theirs"]
    assert all(r["fixed_threshold"]["threshold"] == 0.6 for r in doc["results"])
    assert "flip-ssdg" in doc["conventions"]
    md = (out_dir / "results.md").read_text()
    assert "| ours |" in md and "Average" in md and "FLIP/SSDG" in md
    # the paper does not state its convention: the headline names FLIP/SSDG's, not "the paper's"
    assert "### Cross-domain results (FLIP/SSDG convention)" in md and "paper convention" not in md
    assert (out_dir / "results.csv").read_text().startswith("setting,test_set,checkpoint")
    for f in ("roc_ours.png", "det_ours.png", "hist_theirs.png", "attack_types.md", "index.html"):
        assert (report / f).stat().st_size > 0, f
    assert (report / "roc_ours.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json_res = CliRunner().invoke(main, ["--scores", f"ours={a}", "--scores", f"theirs={b}", "--json"])
    assert set(json.loads(json_res.stdout)["results"]) == {"ours", "theirs"}


def test_dev_scores_fix_the_operating_threshold(tmp_path):
    test, _ = _scores(tmp_path, "test", 0)
    dev = _write(tmp_path / "dev.csv", [("r1", 1, 0.9, "live", 0), ("r2", 1, 0.7, "live", 0),
                                        ("f1", 0, 0.3, "print", 0), ("f2", 0, 0.2, "print", 0)])
    res = CliRunner().invoke(main, ["--scores", str(test), "--dev-scores", str(dev), "--json"])
    assert res.exit_code == 0, res.output
    fixed = json.loads(res.stdout)["fixed_threshold"]
    assert fixed["threshold"] == pytest.approx(0.7) and fixed["threshold_source"].startswith("dev:")


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        ("video_id,score", [("a", 0.5)], "missing column 'label'"),
        ("video_id,label,score", [("a", 1, 0.5), ("b", 2, 0.5)], "line 3, column 'label': must be 0 (fake) or 1"),
        ("video_id,label,score", [("a", 1, "high")], "line 2, column 'score': not a number: 'high'"),
        ("video_id,label,score", [("a", 1, 1.5)], "column 'score': must be P(real) in [0, 1]"),
        ("video_id,label,score,attack_type", [("a", 0, 0.5, "paper")], "column 'attack_type': 'paper' is not one"),
        ("video_id,label,score", [("a", 1, 0.5), ("b", 1, 0.4)], "has 2 real and 0 fake"),
        ("video_id,label,score", [], "no score rows"),
    ],
)
def test_bad_score_files_give_one_line_errors(tmp_path, header, rows, message):
    path = _write(tmp_path / "bad.csv", rows, header)
    res = CliRunner().invoke(main, ["--scores", str(path), "--json"])
    assert res.exit_code != 0
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert message in err
    assert "bad.csv" in err or "test set 'bad'" in err  # the file, or the test set named after it


def test_missing_file_and_no_mode(tmp_path):
    res = CliRunner().invoke(main, ["--scores", str(tmp_path / "nope.csv")])
    assert res.exit_code != 0 and "score file not found" in res.stderr
    res = CliRunner().invoke(main, [])
    assert res.exit_code != 0 and "nothing to do" in res.stderr
