"""``ifas-eval --exclude-videos``: FLIP-format lists leave their videos out of the MCIO test set.

The benchmark is built the way a user builds it for FLIP parity: FLIP-layout crops
(``<ds>/<split>/<real|fake>/<video>_frame<N>.png``) ingested with ``scf ingest --source flip-mcio``. The
lists are written here (a few made-up MSU-MFSD names), never copied from FLIP.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ifas_eval.exclusion import (
    exclude_videos,
    normalize_video_key,
    read_exclusion_file,
    read_exclusion_files,
)


def test_normalisation_of_flip_entries_and_video_ids():
    key = ("msu", "train", "real", "real_client001_android_SD_scene01")
    assert normalize_video_key("msu/train/real/real_client001_android_SD_scene01_frame0.png") == key
    assert normalize_video_key("./MSU/train/real/real_client001_android_SD_scene01_frame1.png ") == key
    assert normalize_video_key("msu\\train\\real\\real_client001_android_SD_scene01") == key
    assert normalize_video_key("/msu/train/real/real_client001_android_SD_scene01.png") == key
    assert normalize_video_key("") == ()


def test_matching_counts_and_suffixes(tmp_path):
    f = tmp_path / "msu_real_shot.txt"
    f.write_text("# FLIP shot list\nmsu/train/real/a_frame0.png 1\n\nMSU/test/real/b_frame0.png\nc\n")
    lst = read_exclusion_file(f)
    assert lst.label == "msu_real_shot.txt" and len(lst.keys) == 3
    ids = ["msu/train/real/a", "msu/train/real/a", "frame/msu/test/real/b", "msu/test/real/bb",
           "oulu/train/real/a", "x/c"]
    keep, counts = exclude_videos(ids, [lst])
    # a (2 frames), b under a longer id, and the plain id c; not bb, not oulu's a
    assert keep == [3, 4] and counts == {"msu_real_shot.txt": 3}


def test_bad_exclusion_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="--exclude-videos .*missing.txt: no such file"):
        read_exclusion_file(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="empty.txt: no video entries"):
        read_exclusion_file(empty)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "shot.txt").write_text("v1\n")
    (tmp_path / "b" / "shot.txt").write_text("v2\n")
    labels = [x.label for x in read_exclusion_files([tmp_path / "a" / "shot.txt", tmp_path / "b" / "shot.txt"])]
    assert labels == [str(tmp_path / "a" / "shot.txt"), str(tmp_path / "b" / "shot.txt")]


@pytest.fixture(scope="module")
def flip_bench(tmp_path_factory):
    """MSU-MFSD crops in FLIP's layout, 3 real + 3 fake videos in each of train/ and test/, ingested."""
    from PIL import Image

    from scf.cli import main as scf

    root = tmp_path_factory.mktemp("flip")
    rng = np.random.default_rng(0)
    for split, first in (("train", 1), ("test", 11)):
        for i in range(3):
            c = f"{first + i:03d}"
            for label, video in (("real", f"real_client{c}_android_SD_scene01"),
                                 ("fake", f"attack_client{c}_android_SD_ipad_video_scene01")):
                for frame in (0, 1):
                    p = root / "frame" / "msu" / split / label / f"{video}_frame{frame}.png"
                    p.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(p)
    res = CliRunner().invoke(scf, ["ingest", "--source", "flip-mcio", "--root", str(root / "frame"), "--out",
                                   str(root / "bench"), "--source-name", "MSU-MFSD", "--no-progress"])
    assert res.exit_code == 0, res.output
    # FLIP-format 5-shot lists: one train/ and one test/ real video, one test/ fake video
    (root / "msu_real_shot.txt").write_text("msu/train/real/real_client001_android_SD_scene01_frame0.png\n"
                                            "./MSU/test/real/real_client011_android_SD_scene01_frame0.png\n")
    (root / "msu_fake_shot.txt").write_text("msu/test/fake/attack_client012_android_SD_ipad_video_scene01_frame0.png\n")
    (root / "oulu_real_shot.txt").write_text("oulu/train/real/1_1_01_1_frame0.png\n")
    return root


def test_mcio_target_is_train_plus_test_minus_the_shot_videos(flip_bench, tiny_ckpt, tmp_path):
    from ifas_eval.cli import main

    base = ["--protocol", "mcio", "--setting", "M", "--checkpoint", f"M={tiny_ckpt}", "--data",
            str(flip_bench / "bench"), "--no-report", "--batch-size", "24"]
    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "all"), "--json"])
    assert res.exit_code == 0, res.output
    (full,) = json.loads(res.stdout)["results"]
    assert (full["n_real"], full["n_fake"], full["n_frames"]) == (6, 6, 24)  # train/ and test/ folders both

    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "flip"), "--exclude-videos",
                                    str(flip_bench / "msu_real_shot.txt"), "--exclude-videos",
                                    str(flip_bench / "msu_fake_shot.txt"), "--exclude-videos",
                                    str(flip_bench / "oulu_real_shot.txt")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "flip" / "results.json").read_text())
    (r,) = doc["results"]
    assert (r["n_real"], r["n_fake"], r["n_frames"]) == (4, 5, 18)
    assert r["excluded_videos"] == {"msu_real_shot.txt": 2, "msu_fake_shot.txt": 1, "oulu_real_shot.txt": 0}
    assert [e["entries"] for e in doc["exclude_videos"]] == [2, 1, 1]
    scores = (next((tmp_path / "flip" / "scores" / "M").iterdir()) / "MSU-MFSD.csv").read_text()
    for gone in ("real_client001_", "real_client011_", "attack_client012_"):
        assert gone not in scores
    for kept in ("attack_client001_", "real_client012_", "attack_client011_"):
        assert kept in scores
    md = (tmp_path / "flip" / "results.md").read_text()
    assert "Videos excluded (--exclude-videos): M/MSU-MFSD: msu_real_shot.txt 2, msu_fake_shot.txt 1" in md
    assert "Videos excluded" in res.stdout
    # the OULU list matched nothing: one warning line naming it (ids differ or wrong dataset)
    warning = "".join(res.stderr.split())  # rich wraps log lines (even inside paths)
    assert "oulu_real_shot.txt:noneofits1videosisinthetestsets(MSU-MFSD)" in warning
    assert "scfingest--sourceflip-mcio" in warning and warning.count("noneofits") == 1


def test_exclusion_that_matches_nothing_warns_and_changes_nothing(tiny_ckpt, tmp_path):
    """A benchmark whose video ids are not FLIP's (here the embedded sample): the run goes on, with a warning."""
    from ifas_eval.cli import main

    shot = tmp_path / "msu_real_shot.txt"
    shot.write_text("msu/train/real/real_client001_android_SD_scene01_frame0.png\n")
    res = CliRunner().invoke(main, ["--protocol", "sample", "--checkpoint", f"sample-domain-b={tiny_ckpt}",
                                    "--setting", "sample-domain-b", "--out", str(tmp_path / "e"), "--no-report",
                                    "--exclude-videos", str(shot), "--json"])
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout)["results"]
    assert r["excluded_videos"] == {"msu_real_shot.txt": 0} and r["n_frames"] == 30
    assert "noneofits1videosisinthetestsets(sample-domain-b)" in "".join(res.stderr.split())


def test_exclusion_flags_need_a_protocol(tiny_ckpt, tmp_path):
    from ifas_eval.cli import main

    res = CliRunner().invoke(main, ["--scores", str(tmp_path / "s.csv"), "--exclude-videos", "x.txt"])
    assert res.exit_code == 1 and res.stderr.strip() == ("Error: --exclude-videos needs --protocol and --checkpoint "
                                                         "(score files are used as they are)")
    res = CliRunner().invoke(main, ["--protocol", "sample", "--checkpoint", f"sample-domain-a={tiny_ckpt}",
                                    "--exclude-videos", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "e")])
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines()[-1] == f"Error: --exclude-videos {tmp_path / 'nope.txt'}: no such file"
