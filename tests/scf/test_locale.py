"""A non-UTF-8 locale with non-ASCII paths (review 16 L3): pyarrow found no file that Python had just written.

scf reads and writes its parquet files through Python file objects now; what only UTF-8 paths can reach (the
captioner's tokenizer and safetensors files, OpenCV's videos) is refused in one line with the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

LATIN1 = "en_US.ISO-8859-1"

_SCRIPT = r'''
import json, sys
from pathlib import Path
from scf.captioning.pipeline import CaptionPipeline, CaptionRunConfig, PipelineError, read_captions, write_captions
from scf.ingest.runner import IngestConfig, run_ingest
from scf.sample import build_sample, write_sample_files
from scf.schema import benchmark_features, load_table
from scf.shards import ShardWriter

base = Path(sys.argv[1])
report = {"encoding": sys.getfilesystemencoding()}
files = write_sample_files(base / "fïles")[0]  # sample-domain-a: 72 images and manifest.csv
config = IngestConfig(source="csv", root=files, out=base / "bénch mark", config_name="sample-domain-a",
                      lists=(files / "manifest.csv",), detect=False, shard_size=20)
report["rows"] = run_ingest(config, show_progress=False).rows_total
again = run_ingest(config, show_progress=False)
report["rows_again"], report["rows_this_run"] = again.rows_total, again.rows_this_run
report["loaded"] = sum(len(s) for s in load_table(base / "bénch mark", "benchmark").values())
(base / "bénch mark" / "sample-domain-a").rename(base / "bénch mark" / "dömäin")
try:  # `datasets` names the Arrow copy after the folder: a non-ASCII folder name is refused in one line
    load_table(base / "bénch mark" / "dömäin", "benchmark")
except Exception as e:
    report["load_refused"] = f"{type(e).__name__}: {e}"
write_captions(base / "öut" / "general", "train", [("k1", "a caption é"), ("k2", "another")])
report["captions"] = read_captions(base / "öut" / "general")
try:
    CaptionPipeline(CaptionRunConfig(out=base / "öut", captioner="tiny", show_progress=False),
                    dataset=build_sample())
except PipelineError as e:
    report["refused"] = str(e)
print("REPORT " + json.dumps(report))
'''


@pytest.fixture(scope="module")
def latin1_env(tmp_path_factory):
    """The environment of a shell under an ISO-8859-1 locale (compiled here with localedef)."""
    if shutil.which("localedef") is None:
        pytest.skip("localedef is not installed: cannot make an ISO-8859-1 locale")
    loc = tmp_path_factory.mktemp("locales")
    made = subprocess.run(["localedef", "-i", "en_US", "-f", "ISO-8859-1", str(loc / LATIN1)], capture_output=True)
    if not (loc / LATIN1).exists():
        pytest.skip(f"localedef could not make {LATIN1}: {made.stderr.decode(errors='replace')[:200]}")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUTF8", "PYTHONIOENCODING")}
    env.update(LOCPATH=str(loc), LANG=LATIN1, LC_ALL=LATIN1, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               HF_DATASETS_CACHE=str(tmp_path_factory.mktemp("hf-cache")))
    return env


def test_ingest_and_caption_shards_work_under_a_latin1_locale_and_c_s_is_refused_in_one_line(tmp_path, latin1_env):
    script = tmp_path / "script.py"  # a source file is read as UTF-8 whatever the locale (-c text would not be)
    script.write_text(_SCRIPT, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=latin1_env, capture_output=True,
                          encoding="utf-8", errors="replace", timeout=240)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(lines[0].removeprefix("REPORT "))
    assert report["encoding"] == "iso8859-1"
    assert report["rows"] == report["rows_again"] == report["loaded"] == 72  # written, resumed, loaded
    assert report["rows_this_run"] == 0
    assert report["captions"] == {"k1": "a caption é", "k2": "another"}
    assert report["load_refused"].startswith(f"SchemaError: {tmp_path}/bénch mark/dömäin: a non-ASCII path under ")
    assert "\n" not in report["load_refused"] and "PYTHONUTF8=1" in report["load_refused"]
    refused = report["refused"]
    assert refused.endswith("set a UTF-8 locale (e.g. LANG=C.UTF-8) or PYTHONUTF8=1, or use an ASCII path")
    assert "captioner: a non-ASCII path under a locale whose file-system encoding is iso8859-1" in refused


def test_a_video_with_a_non_ascii_path_stops_the_ingest_in_one_line(tmp_path, monkeypatch, face):
    """OpenCV opens videos by UTF-8 path: under a latin-1 locale it would skip every such video for good."""
    import cv2

    from scf.ingest.base import IngestError
    from scf.ingest.runner import IngestConfig, run_ingest

    root = tmp_path / "vidéos"
    (root / "train" / "real").mkdir(parents=True)
    path = root / "train" / "real" / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (144, 144))
    for _ in range(8):
        canvas = np.full((144, 144, 3), 90, np.uint8)
        canvas[12:132, 14:129] = face
        writer.write(canvas)
    writer.release()
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "iso8859-1")
    with pytest.raises(IngestError) as e:
        run_ingest(IngestConfig(source="image-folder", root=root, out=tmp_path / "out", detect=False),
                   show_progress=False)
    assert str(e.value).startswith(f"{path}: a non-ASCII path under a locale whose file-system encoding is iso8859-1")
    monkeypatch.undo()  # the same folder under a UTF-8 locale: the video is ingested
    summary = run_ingest(IngestConfig(source="image-folder", root=root, out=tmp_path / "out", detect=False),
                         show_progress=False)
    assert summary.rows_total == 2 and not summary.skipped
