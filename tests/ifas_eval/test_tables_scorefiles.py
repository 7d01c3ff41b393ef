"""Review 19: the Average row with uneven checkpoint counts, exact score-file round trips, the reader's edge
cases and the report gallery judged per video (as the metrics are)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ifas_eval.cli import main


def _result(setting, test_set, seed, hter):
    return {"setting": setting, "test_set": test_set, "seed_index": seed, "hter": hter, "auc": 0.9,
            "tpr_at_fpr_1pct": 0.5, "n_real": 1, "n_fake": 1}


def test_the_average_row_is_na_with_a_note_when_settings_have_different_numbers_of_checkpoints():
    from rich.console import Console

    from ifas_eval.tables import aggregate, markdown_table, rich_table

    uneven = [_result("A", "M", 0, 0.10), _result("A", "M", 1, 0.20), _result("A", "M", 2, 0.30),
              _result("B", "C", 0, 0.02)]
    agg = aggregate(uneven)
    assert agg["average"]["HTER (%)"] == {"mean": None, "std": None} and agg["average"]["n_seeds"] is None
    assert "different numbers of checkpoints (A on M: 3, B on C: 1)" in agg["average"]["note"]
    md = markdown_table(agg, "t")
    assert "| Average |  |  | n/a | n/a | n/a |" in md and "6.00" not in md
    assert "Average: n/a, the settings have different numbers of checkpoints" in md
    console = Console(width=400, record=True)
    console.print(rich_table(agg, "t"))
    text = console.export_text()
    assert "n/a" in text and "different numbers of checkpoints" in text and "6.00" not in text
    assert json.loads(json.dumps(agg))["average"]["HTER (%)"]["mean"] is None  # results.json: null, with the note
    # equal counts: the mean over settings per seed, then mean ± std over seeds (11.00 = (20 + 2) / 2 here)
    even = [_result("A", "M", 0, 0.20), _result("A", "M", 1, 0.22), _result("B", "C", 0, 0.02),
            _result("B", "C", 1, 0.04)]
    agg = aggregate(even)
    assert agg["average"]["n_seeds"] == 2 and "note" not in agg["average"]
    assert agg["average"]["HTER (%)"]["mean"] == pytest.approx(12.0)
    assert "| Average |  |  | 12.00 ± 1.41 |" in markdown_table(agg, "t")


def test_float32_scores_round_trip_exactly_through_a_score_file(tmp_path):
    from ifas_eval.metrics import ScoreSet, evaluate_score_set
    from ifas_eval.scorefile import read_scores, write_scores

    # adjacent float32 values (8 digits wrote both as 0.10000002) and a float32 just below a grid point
    scores = np.array([0.10000002384185791, 0.10000001639127731, np.float32(0.1235), 0.12345, 0.9, 0.1],
                      dtype=np.float32).astype(np.float64)
    ss = ScoreSet("t", scores, [1, 0, 1, 0, 1, 0], [f"v{i}" for i in range(6)])
    back = read_scores(write_scores(tmp_path / "t.csv", ss))
    assert back.scores.tolist() == ss.scores.tolist()
    assert evaluate_score_set(back) == evaluate_score_set(ss)
    # an old 8-digit file still reads
    (tmp_path / "old.csv").write_text("video_id,label,score\na,1,0.10000002\nb,0,0.1\n")
    assert read_scores(tmp_path / "old.csv").scores.tolist() == [0.10000002, 0.1]


def test_score_file_with_bom_and_float_labels_reads_and_underscored_numbers_are_refused(tmp_path):
    rows = "video_id,label,score\na,1.0,0.9\nb,0.0,0.2\nc,1,0.8\nd,0,0.4\n"
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + rows.encode())
    res = CliRunner().invoke(main, ["--scores", str(bom), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["auc"] == 1.0
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,label,score\na,1,0.9_0\nb,0,0.2\n")
    res = CliRunner().invoke(main, ["--scores", str(bad)])
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines()[-1] == f"Error: {bad}, line 2, column 'score': not a number: '0.9_0'"
    bad.write_text("video_id,label,score\na,0.5,0.9\n")
    res = CliRunner().invoke(main, ["--scores", str(bad)])
    assert res.exit_code == 1 and "column 'label': must be 0 (fake) or 1 (real), got '0.5'" in res.stderr


def test_the_gallery_judges_videos_as_the_metrics_do():
    from ifas_eval.metrics import ScoreSet
    from ifas_eval.report import pick_examples

    # v1 real, frames 0.9 / 0.3: mean 0.6, right at 0.5 (its 0.3 frame alone would look "wrong");
    # v2 fake 0.2 / 0.1: right; v3 fake 0.7 / 0.6: mean 0.65, wrong
    ss = ScoreSet("t", [0.9, 0.3, 0.2, 0.1, 0.7, 0.6], [1, 1, 0, 0, 0, 0], ["v1", "v1", "v2", "v2", "v3", "v3"])
    picked = pick_examples(ss, 0.5, 2)
    assert picked == [4, 0, 3]  # wrong: v3 (its most "real" frame); right: v1 (0.9), v2 (0.1); one per video
    assert 1 not in picked
