"""tools/bench_ingest.py: a one-item run prints the per-item cost, the bytes of one crop and the implied disk size."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "bench_ingest.py"


def test_bench_ingest_prints_crop_bytes_and_the_celeba_spoof_disk_size(capsys):
    """Review 15 L2: the bench measured time only; disk (75 KB per PNG crop, ~47 GB for CelebA-Spoof, twice
    that after the first load) is what fills a 64 GiB machine."""
    spec = importlib.util.spec_from_file_location("bench_ingest", TOOL)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--images", "1", "--videos", "1"])
    out = capsys.readouterr().out
    assert re.search(r"images/s", out) and re.search(r"videos/s", out), out
    m = re.search(r"one 224x224 crop: PNG ([\d,]+) bytes, JPEG \(--image-format jpeg\) ([\d,]+) bytes", out)
    assert m, out
    png, jpeg = (int(g.replace(",", "")) for g in m.groups())
    assert 30_000 < png < 200_000 and 5_000 < jpeg < png / 2  # a real 224 face crop; JPEG q95 several times smaller
    for fmt, size in (("PNG", png), ("JPEG", jpeg)):
        line = re.search(rf"CelebA-Spoof \(625,537 images\) as {fmt}: shards ([\d.]+) GB; with the first load's "
                         rf"Arrow copy \(HF_DATASETS_CACHE\) ([\d.]+) GB", out)
        assert line, out
        shards, total = map(float, line.groups())
        assert abs(shards - size * 625_537 / 1e9) < 0.06 and abs(total - 2 * shards) < 0.11
