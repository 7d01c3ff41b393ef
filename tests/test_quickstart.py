"""The README's main command, end to end: the quick start on the embedded sample (the project's smoke test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs_the_whole_pipeline_offline(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "hf-cache")}
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "quickstart.py"), "--workdir", str(tmp_path / "qs")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    w = tmp_path / "qs"
    # every stage left its product
    assert (w / "benchmark" / "sample-domain-a" / "data").is_dir()
    assert list((w / "scf" / "corpus" / "data").glob("*.parquet"))
    assert (w / "run" / "final" / "model.safetensors").exists()
    results = json.loads((w / "eval" / "results.json").read_text())
    text = json.dumps(results)
    assert "sample-domain-a" in text and "flip-ssdg" in text
    assert (w / "eval" / "report" / "index.html").exists()
    # the prediction line, and the plain warning that the models are tiny and random
    line = next(json.loads(x) for x in proc.stdout.splitlines() if x.startswith('{"input"'))
    assert line["judgment"] in ("real", "fake") and 0.0 <= line["p_real"] <= 1.0 and line["threshold"] == 0.5
    assert "TINY and RANDOM-INITIALISED" in out and "--preset default" in out
