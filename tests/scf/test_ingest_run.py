"""End-to-end ingest: real decoding of fake trees (a real face photo), bad files, resume, workers, CLI, cards."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

# the field's list files, in the shared/ folder beside the checkout (FACTS.md, reference/lists)
LISTS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "lists"


def write_video(path: Path, face, n=16, blank=False):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (144, 144))
    for i in range(n):
        canvas = np.full((144, 144, 3), 90, np.uint8)
        if not blank:
            canvas[12 + i % 3 : 132 + i % 3, 14:129] = face
        w.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    w.release()


def write_image(path: Path, array, **save):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = array if isinstance(array, Image.Image) else Image.fromarray(array)
    img.save(path, **save)


def oulu_tree(root: Path, face) -> None:
    write_video(root / "Train_files/1_1_01_1.avi", face)
    write_video(root / "Train_files/1_1_01_2.avi", face)
    write_video(root / "Dev_files/2_2_22_4.mov", face)
    write_video(root / "Test_files/3_3_40_5.mp4", face)
    write_video(root / "Test_files/3_3_41_1.avi", face, blank=True)  # no face anywhere
    (root / "Test_files/3_3_42_1.avi").write_bytes(b"")  # zero bytes
    (root / "Test_files/3_3_43_2.avi").write_bytes(b"RIFF" + b"\0" * 300)  # corrupt
    (root / "Test_files/notes.avi").write_bytes(b"x")  # matches no naming rule
    (root / "Protocols").mkdir()
    (root / "Protocols/readme.txt").write_text("metadata")


def run(source, root, out, **kw):
    from scf.ingest import IngestConfig, run_ingest

    return run_ingest(IngestConfig(source=source, root=root, out=out, **kw), show_progress=False)


def load(out, name=None):
    import datasets

    # a cache per folder: datasets' cache key of a local parquet folder can collide across temporary folders
    return datasets.load_dataset(str(out), name, cache_dir=str(Path(out).parent / f"hf-cache-{Path(out).name}"))


def test_oulu_protocol_files_select_the_protocols_videos_and_splits(tmp_path, face):
    """--list Protocols/Protocol_3/{Train,Dev,Test}_2.txt: only those videos, split and label from the files."""
    from click.testing import CliRunner

    from scf.cli import main

    root = tmp_path / "OULU"
    for name in ("Train_files/1_1_01_1.avi", "Train_files/1_1_01_2.avi", "Train_files/2_1_02_4.avi",
                 "Dev_files/1_2_22_1.avi", "Dev_files/1_2_22_5.avi", "Test_files/1_3_40_3.avi",
                 "Test_files/1_3_40_1.avi"):
        write_video(root / name, face, n=8)
    proto = root / "Protocols/Protocol_3"
    proto.mkdir(parents=True)
    (proto / "Train_2.txt").write_text("+1,1_1_01_1\n-1,1_1_01_2\n")  # phone 2 left out of this fold
    (proto / "Dev_2.txt").write_text("+1,1_2_22_1\n-1,1_2_22_5\n")
    (proto / "Test_2.txt").write_text("-1,1_3_40_3\n+1,1_3_40_1\n+1,1_3_99_1\n-1,1_3_40_1\n")
    out = tmp_path / "out"
    lists = [a for f in ("Train_2", "Dev_2", "Test_2") for a in ("--list", str(proto / f"{f}.txt"))]
    res = CliRunner().invoke(main, ["ingest", "--source", "oulu-npu", "--root", str(root), "--out", str(out),
                                    "--config", "protocol-3-fold-2", *lists, "--no-progress"])
    assert res.exit_code == 0, res.output
    ds = load(out, "protocol-3-fold-2")
    rows = {(r["split"], r["video_id"].split("/")[-1], r["label"]) for s in ds for r in ds[s]}
    assert rows == {("train", "1_1_01_1", 1), ("train", "1_1_01_2", 0), ("dev", "1_2_22_1", 1),
                    ("dev", "1_2_22_5", 0), ("test", "1_3_40_3", 0), ("test", "1_3_40_1", 1)}
    assert sum(len(ds[s]) for s in ds) == 12  # two frames per video
    skipped = [json.loads(line) for line in (out / "protocol-3-fold-2" / "skipped.jsonl").read_text().splitlines()]
    # 1_3_99_1 is not in the release; "-1,1_3_40_1" contradicts its access type (live), as the earlier line said
    assert {(s["key"], s["reason"]) for s in skipped} == {("1_3_99_1", "missing file"),
                                                           ("Test_files/1_3_40_1.avi",
                                                            "list label contradicts the file name")}

    # a protocol file mixed with another kind of list is refused before any work
    other = tmp_path / "other.txt"
    other.write_text("Train_files/1_1_01_1.avi 0\n")
    res = CliRunner().invoke(main, ["ingest", "--source", "oulu-npu", "--root", str(root), "--out",
                                    str(tmp_path / "o2"), "--list", str(proto / "Train_2.txt"), "--list", str(other)])
    assert res.exit_code == 1 and "not an OULU-NPU protocol file" in res.output


def test_oulu_videos_end_to_end(tmp_path, face):
    from scf.schema import validate_dataset

    root, out = tmp_path / "OULU", tmp_path / "out"
    oulu_tree(root, face)
    s = run("oulu-npu", root, out, shard_size=3)
    assert s.splits["train"]["rows"] == 4 and s.splits["train"]["attack_types"] == {"live": 2, "print": 2}
    assert s.splits["dev"]["attack_types"] == {"replay": 2} and s.splits["test"]["attack_types"] == {"replay": 2}
    assert s.skipped == {"empty file": 1, "no face detected": 2, "no naming rule": 1, "unreadable video": 1}
    assert (s.files_seen, s.files_with_rows, s.files_skipped, s.unaccounted) == (8, 4, 4, [])
    assert s.other_files == {".txt": 1}
    ds = load(out)
    for split in ds.values():
        validate_dataset(split)
    train = ds["train"]
    assert sorted(train["frame_index"]) == [6, 6, 14, 14]  # FLIP rule: 6 and 6 + 16 // 2
    assert sorted(set(train["video_id"])) == ["Train_files/1_1_01_1", "Train_files/1_1_01_2"]
    assert "Train_files/1_1_01_1.avi#6" in train["path"]
    assert train[0]["image"].size == (224, 224) and train[0]["image"].mode == "RGB"
    assert set(train["subject_id"]) == {"01"} and set(train["source"]) == {"OULU-NPU"}
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "config_name: default" in card and "licence" in card.lower()
    assert "| train | 4 | 2 | 2 | 2 |" in card and "files seen 8 = with rows 4 + skipped 4" in card
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert {e["key"] for e in skipped} >= {"Test_files/3_3_42_1.avi", "Test_files/3_3_41_1.avi#6"}


def test_resume_after_interruption_redoes_nothing(tmp_path, face):
    from scf.ingest import runner

    root, out = tmp_path / "OULU", tmp_path / "out"
    oulu_tree(root, face)
    real_process, calls = runner.process, []

    def dying(*args):
        calls.append(args[0].path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_process(*args)

    with mock.patch.object(runner, "process", dying), pytest.raises(KeyboardInterrupt):
        run("oulu-npu", root, out, shard_size=1)
    first = list(calls)
    rows_before = sum(1 for _ in (out / "data").glob("*.parquet"))
    assert rows_before == 4  # Dev and Test videos before the kill: two frames each, one row per shard
    calls.clear()

    def counting(*args):
        calls.append(args[0].path)
        return real_process(*args)

    with mock.patch.object(runner, "process", counting):
        s = run("oulu-npu", root, out, shard_size=1)
    # finished videos are still opened to count frames, but no finished frame is decoded or written again
    assert s.rows_this_run == 4 and s.rows_total == 8
    paths = [p for split in load(out).values() for p in split["path"]]
    assert len(paths) == len(set(paths)) == 8
    assert first[:3] == calls[:3]
    with pytest.raises(Exception, match="other settings"):
        run("oulu-npu", root, out, margin=0.5)


def test_two_workers_write_the_same_shards_byte_for_byte(tmp_path, face):
    """review21 M1: with --workers 2 the rows came out in the order the workers finished, so each run wrote other
    shards (and the same seed trained another model downstream); now the shards equal --workers 1's."""
    root = tmp_path / "OULU"
    oulu_tree(root, face)
    one = run("oulu-npu", root, tmp_path / "one")
    two = run("oulu-npu", root, tmp_path / "two", workers=2)
    assert one.splits == two.splits and one.skipped == two.skipped
    shards = sorted(p.name for p in (tmp_path / "one" / "data").glob("*.parquet"))
    assert shards and shards == sorted(p.name for p in (tmp_path / "two" / "data").glob("*.parquet"))
    for name in shards:
        assert (tmp_path / "one" / "data" / name).read_bytes() == (tmp_path / "two" / "data" / name).read_bytes()


def test_the_pool_hands_results_over_in_submission_order_whatever_finishes_first(monkeypatch):
    import _pool_work

    from scf.ingest import runner

    monkeypatch.setattr(runner, "process", _pool_work.slow_first)
    handled = []
    runner._run_pool(2, iter(range(12)), lambda item: (item,), lambda result, item: handled.append((result, item)))
    assert handled == [(i, i) for i in range(12)]  # item 0 finished last, and was still written first


def test_the_workers_keep_going_behind_a_slow_item(monkeypatch):
    """review23 M2: writing in submission order made the workers wait for a slow item (a long video) once a few
    later items had finished; finished items now wait in a reorder buffer while the workers go on."""
    import _pool_work

    from scf.ingest import runner

    monkeypatch.setattr(runner, "process", _pool_work.slow_first_timed)
    done = []
    runner._run_pool(2, iter(range(40)), lambda item: (item,), lambda result, item: done.append(result))
    assert [i for i, _ in done] == list(range(40))
    head_finished = done[0][1]
    assert sum(t < head_finished for _, t in done[1:]) >= 30  # strict order allowed at most 7 (4 per worker)


def test_celeba_spoof_images_boxes_modes_and_bad_files(tmp_path, face):
    from PIL import Image

    root = tmp_path / "CelebA_Spoof"
    live, spoof = root / "Data/train/4980/live", root / "Data/train/4980/spoof"
    write_image(live / "1.jpg", face)
    flat = np.full((100, 100, 3), 128, np.uint8)  # no face: only its box can crop it
    write_image(live / "2.png", flat)
    (live / "2_BB.txt").write_text("56 56 112 112 0.99\n")  # 224-scaled: the centre half of the image
    write_image(spoof / "3.png", Image.fromarray(face).convert("L"))
    write_image(spoof / "4.png", Image.fromarray(face).convert("RGBA"))
    write_image(spoof / "5.jpg", Image.fromarray(face).convert("CMYK"))
    write_image(spoof / "6.png", Image.fromarray((np.asarray(Image.fromarray(face).convert("L")).astype(np.uint16)
                                                  * 257), mode="I;16"))
    write_image(spoof / "7.tif", Image.fromarray(np.zeros((40, 40), np.float32), mode="F"))
    full = spoof / "8.jpg"
    write_image(full, face)
    (spoof / "9.jpg").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])  # truncated
    (spoof / "10.png").write_bytes(b"")
    (spoof / "11.jpg").write_text("not an image")
    write_image(spoof / "12.png", flat)  # no face, no box
    (root / "metas/intra_test").mkdir(parents=True)
    labels = {f"Data/train/4980/spoof/{i}.{e}": [0] * 40 + [t, 0, 0, 1]
              for i, e, t in [(3, "png", 3), (4, "png", 8), (5, "jpg", 10), (6, "png", 1), (8, "jpg", 7)]}
    (root / "metas/intra_test/train_label.json").write_text(json.dumps(labels))
    s = run("celeba-spoof", root, tmp_path / "out")
    assert s.splits["train"]["real"] == 2
    assert s.splits["train"]["attack_types"] == {"live": 2, "print": 2, "replay": 2, "mask": 1}
    assert s.skipped == {"corrupt image": 1, "empty file": 1, "no face detected": 1, "unreadable image": 1,
                         "unsupported image mode": 1}
    assert s.files_seen == 12 and not s.unaccounted
    ds = load(tmp_path / "out")["train"]
    row = ds[ds["path"].index("Data/train/4980/live/2.png")]
    assert np.asarray(row["image"]).std() < 1  # the box crop of the flat image
    assert ds[ds["path"].index("Data/train/4980/spoof/5.jpg")]["attack_detail"] == "3D mask"


def test_flip_mcio_crops_and_lists(tmp_path, face):
    if not LISTS.is_dir():
        pytest.skip("reference lists of the field not on this machine")
    root = tmp_path / "frame"
    chosen = {}
    for name in ("casia_real_train.txt", "msu_fake_test.txt", "replay_fake_train.txt", "oulu_real_test.txt"):
        lines = (LISTS / "flip-mcio" / name).read_text().split()[:2]
        lst = tmp_path / "txt" / name
        lst.parent.mkdir(exist_ok=True)
        lst.write_text("\n".join(lines) + "\n")
        chosen[name] = lines
        for line in lines:
            write_image(root / line, face)
            if line != lines[-1] or name != "oulu_real_test.txt":  # one video lacks its frame1
                write_image(root / line.replace("_frame0.", "_frame1."), face)
    lists = tuple(sorted((tmp_path / "txt").glob("*.txt")))
    s = run("flip-mcio", root, tmp_path / "out", lists=lists)
    assert s.skipped == {"missing file": 1}
    assert s.settings["detect"] is False  # pre-cropped
    rows = {split: ds for split, ds in load(tmp_path / "out").items()}
    total = sum(len(ds) for ds in rows.values())
    assert total == 15
    everything = [r for ds in rows.values() for r in ds.select_columns(["label", "attack_type", "frame_index",
                                                                        "video_id", "path"])]
    for r in everything:
        assert r["label"] == (("/real/" in r["path"]) * 1)
        assert r["frame_index"] == int(r["path"][-5])
        assert r["video_id"] == r["path"].rsplit("_frame", 1)[0]


def test_casia_fas_lists_with_polarity(tmp_path, face):
    from scf.ingest import IngestError

    root = tmp_path / "CASIA-FAS"
    lines = ["OULU_NPU/Train_files/6_3_19_1 0", "OULU_NPU/Train_files/3_3_04_3 1", "OULU_NPU/Train_files/9_9_99_9 1",
             "OULU_NPU/Train_files/5_2_01_2 0", "OULU_NPU/Train_files/missing_1 1"]
    for line in lines[:4]:
        for i in range(8):
            write_image(root / line.split()[0] / "crop" / f"{i + 1}.png", face)
    lst = tmp_path / "OULU_NPU_video_train.txt"
    lst.write_text("\n".join(lines) + "\n")
    with pytest.raises(IngestError, match="label-polarity is required"):
        run("casia-fas-list", root, tmp_path / "out", lists=(lst,))
    good = tmp_path / "good_train.txt"
    good.write_text("\n".join(lines[:3]) + "\n")
    with pytest.raises(IngestError, match="contradicts.*live0"):
        run("casia-fas-list", root, tmp_path / "out", lists=(good,), label_polarity="live1")
    s = run("casia-fas-list", root, tmp_path / "out", lists=(lst,), label_polarity="live0")
    assert s.splits["train"]["attack_types"] == {"live": 2, "print": 2, "other": 2}  # 9_9_99_9: no rule
    assert s.skipped == {"list label contradicts the file name": 1, "missing file": 1}
    ds = load(tmp_path / "out")["train"]
    assert sorted(set(ds["video_id"]))[0] == "OULU_NPU/Train_files/3_3_04_3"
    assert sorted(ds["frame_index"]) == [6, 6, 6, 7, 7, 7]  # 8 frames: FLIP's 6 and 6 + 4 -> clamped to 7


def test_image_folder_and_csv_manifest(tmp_path, face):
    root = tmp_path / "imgs"
    write_image(root / "train/real/a.png", face)
    write_image(root / "train/print/b.png", face)
    write_image(root / "test/fake/c.png", face)
    write_image(root / "stray.png", face)
    s = run("image-folder", root, tmp_path / "out1")
    assert s.splits["train"]["attack_types"] == {"live": 1, "print": 1}
    assert s.splits["test"]["attack_types"] == {"other": 1} and s.skipped == {"no naming rule": 1}
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,attack_type,split,subject_id\ntrain/real/a.png,real,,train,s1\n"
                        "train/print/b.png,0,replay,dev,s2\ntest/fake/c.png,2,,test,\ntest/fake/c.png,0,paper,test,\n"
                        "nope.png,1,,train,\ntrain/real/a.png,1,,train,s1\n")
    s = run("csv", root, tmp_path / "out2", lists=(manifest,))
    assert s.splits["train"]["attack_types"] == {"live": 1} and s.splits["dev"]["attack_types"] == {"replay": 1}
    assert s.skipped == {"duplicate entry": 1, "malformed manifest row": 2, "missing file": 1}


def test_cli_errors_configs_card_and_push(tmp_path, face):
    from click.testing import CliRunner

    from scf.cli import main

    cli = CliRunner()
    r = cli.invoke(main, ["ingest", "--list-sources"])
    assert r.exit_code == 0 and "hifimask" in r.output and "casia-fas-list" in r.output
    r = cli.invoke(main, ["ingest", "--source", "nope", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "unknown source 'nope'" in r.output and "Traceback" not in r.output
    r = cli.invoke(main, ["ingest", "--source", "oulu", "--root", str(tmp_path / "absent"), "--out", str(tmp_path)])
    assert r.exit_code != 0 and "--root does not exist" in r.output
    assert not (tmp_path / "o").exists()  # failed before any work

    write_image(tmp_path / "a/train/real/x.png", face)
    write_image(tmp_path / "a/train/fake/y.png", face)
    write_image(tmp_path / "b/test/replay/z.png", face)
    hub = tmp_path / "hub"
    for name, src in (("set-a", "a"), ("set-b", "b")):
        r = cli.invoke(main, ["ingest", "--source", "image-folder", "--root", str(tmp_path / src), "--out", str(hub),
                              "--config", name, "--no-progress"])
        assert r.exit_code == 0, r.output
    assert "real" in r.output and "files seen 1 = with rows 1 + skipped 0" in r.output
    card = (hub / "README.md").read_text()
    assert "config_name: set-a" in card and "path: set-b/data/test-*" in card
    assert len(load(hub, "set-a")["train"]) == 2 and len(load(hub, "set-b")["test"]) == 1

    with mock.patch("huggingface_hub.HfApi") as api_cls:
        api_cls.return_value.create_repo.return_value = "https://huggingface.co/datasets/org/fas"
        r = cli.invoke(main, ["ingest", "--source", "image-folder", "--root", str(tmp_path / "b"), "--out", str(hub),
                              "--config", "set-b", "--no-progress", "--push-to-hub", "org/fas"])
    assert r.exit_code == 0, r.output
    api = api_cls.return_value
    # item 6: private by default (licensed face crops)
    api.create_repo.assert_called_once_with("org/fas", repo_type="dataset", exist_ok=True, private=True)
    assert "(private repository)" in r.output
    kwargs = api.upload_folder.call_args.kwargs
    # a copy without local paths (review 10 #6, see test_ingest_hub_and_provenance.py), removed after the upload
    assert kwargs["folder_path"] == str(hub.with_name(f".{hub.name}.hub-upload")) and kwargs["repo_id"] == "org/fas"
    assert kwargs["repo_type"] == "dataset" and not hub.with_name(f".{hub.name}.hub-upload").exists()
    assert "private unless `--public`" in (hub / "README.md").read_text()
    for flags, private in ((["--public"], False), (["--private"], True)):  # --private: old commands still run
        with mock.patch("huggingface_hub.HfApi") as api_cls:
            r = cli.invoke(main, ["ingest", "--source", "image-folder", "--root", str(tmp_path / "b"), "--out",
                                  str(hub), "--config", "set-b", "--no-progress", "--push-to-hub", "org/fas", *flags])
        assert r.exit_code == 0, r.output
        api_cls.return_value.create_repo.assert_called_once_with("org/fas", repo_type="dataset", exist_ok=True,
                                                                 private=private)
    r = cli.invoke(main, ["ingest", "--source", "image-folder", "--root", str(tmp_path / "b"), "--out", str(hub),
                          "--push-to-hub", "org/fas", "--public", "--private"])
    assert r.exit_code == 1 and "--public and --private contradict" in r.output
    r = cli.invoke(main, ["ingest", "--help"])
    assert "--public" in r.output and "--private" not in r.output  # hidden


def test_resume_refuses_changed_source_name_split_lists_polarity(tmp_path, face, monkeypatch):
    """Item 8: rows already written keep their source and split, so a rerun that changes them is refused;
    the same list given relative or absolute, and an older ingest_config.json without those keys, resume."""
    from click.testing import CliRunner

    from scf.cli import main

    root = tmp_path / "imgs"
    write_image(root / "a.png", face)
    write_image(root / "b.png", face)
    (tmp_path / "m.csv").write_text("path,label\na.png,1\nb.png,0\n")
    (tmp_path / "other.csv").write_text("path,label\na.png,1\n")
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    base = ["ingest", "--source", "csv", "--root", "imgs", "--out", "o", "--no-detect", "--no-progress"]
    r = cli.invoke(main, [*base, "--list", "m.csv"])
    assert r.exit_code == 0, r.output
    recorded = json.loads((tmp_path / "o/ingest_config.json").read_text())
    assert recorded["source_name"] == "CSV manifest" and recorded["split"] is None
    assert recorded["lists"] == [str(tmp_path / "m.csv")] and recorded["label_polarity"] is None

    for extra, message in (
        (["--list", "m.csv", "--source-name", "Other"], "--source-name 'CSV manifest' there, 'Other' now"),
        (["--list", "m.csv", "--split", "train"], "--split not set there, 'train' now"),
        (["--list", "other.csv"], f"--list ['{tmp_path / 'm.csv'}'] there, ['{tmp_path / 'other.csv'}'] now"),
        (["--list", "m.csv", "--label-polarity", "live1"], "--label-polarity not set there, 'live1' now"),
    ):
        r = cli.invoke(main, [*base, *extra])
        assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
        assert r.output.startswith("Error: o was written with other settings: ") and message in r.output, r.output
    assert json.loads((tmp_path / "o/ingest_config.json").read_text()) == recorded  # not overwritten
    rows = load(tmp_path / "o")["test"]
    assert set(rows["source"]) == {"CSV manifest"} and len(rows) == 2

    r = cli.invoke(main, [*base, "--list", str(tmp_path / "m.csv")])  # the same file, absolute: resumes
    assert r.exit_code == 0 and "rows" in r.output, r.output

    legacy = {k: v for k, v in recorded.items() if k != "source_name"} | {"lists": ["m.csv"]}
    (tmp_path / "o/ingest_config.json").write_text(json.dumps(legacy))  # written before item 8
    r = cli.invoke(main, [*base, "--list", "m.csv"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o/ingest_config.json").read_text())["source_name"] == "CSV manifest"


def test_a_failed_push_names_a_private_hf_upload_command(tmp_path, face, monkeypatch):
    """Review 8 #4: the advice uses the installed `hf` CLI and keeps the repository private."""
    import huggingface_hub
    from ingest_cli import OfflineHfApi, ingest, write_image

    monkeypatch.setattr(huggingface_hub, "HfApi", OfflineHfApi)
    write_image(tmp_path / "root/train/real/a.png", face)
    r = ingest("--source", "image-folder", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "o"),
               "--push-to-hub", "me/mine")
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1] == (
        "Error: push to me/mine failed: ConnectionError: Name or service not known; the dataset is in "
        f"{tmp_path / 'o'}: rerun the same command to retry (nothing is ingested again), or hf upload --repo-type "
        f"dataset --private me/mine {tmp_path / '.o.hub-upload'} (its copy without local paths; delete it afterwards)")
