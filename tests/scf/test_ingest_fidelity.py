"""Protocol fidelity of `scf ingest` (review 2): WMCA's protocol file, 0-row runs, per-entry sources of the list
readers, FLIP's CelebA-Spoof lists and HKBU-MARs V2."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

# the field's list files, in the shared/ folder beside the checkout (FACTS.md, reference/lists)
LISTS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "lists"


def grey(path: Path, value: int = 120) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 40, 3), value, np.uint8)).save(path)


def ingest(*args: str):
    """``scf ingest ARGS --no-progress`` through click: (exit code, output)."""
    from click.testing import CliRunner

    from scf.cli import main

    res = CliRunner().invoke(main, ["ingest", *args, "--no-progress"])
    return res.exit_code, res.output


def rows(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    cols = ["split", "label", "attack_type", "attack_detail", "source", "video_id", "frame_index", "path"]
    return [r for f in sorted((out / "data").glob("*.parquet")) for r in pq.read_table(f, columns=cols).to_pylist()]


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


# --- H2: WMCA's grand-test protocol file as the field ships it (.txt with CSV content) -----------------------
WMCA_VIDEOS = ["face-station/17.01.18/002_01_003_2_81", "face-station/14.03.18/002_04_010_0_82",
               "face-station/14.03.18/009_04_010_0_82", "face-station/23.01.18/010_01_000_3_05"]


def wmca_tree(root: Path) -> None:
    for video in WMCA_VIDEOS:
        for i in range(1, 9):
            grey(root / video / f"{i}.png")


def test_wmca_protocol_file_recognised_by_header_and_labels_checked(tmp_path, caplog):
    root = tmp_path / "wmca"
    wmca_tree(root)
    protocol = tmp_path / "IDIAP_WMCA_WMCA_Grandtest.txt"  # the real name: CSV content, .txt suffix
    protocol.write_text(",client_id,filepath,group,label\n"
                        f"1,2,{WMCA_VIDEOS[0]},train,attack\n"
                        f"2,2,{WMCA_VIDEOS[1]},eval,bonafide\n"
                        f"3,9,{WMCA_VIDEOS[2]},devel,attack\n"  # type 0 in the name: contradiction
                        f"4,10,{WMCA_VIDEOS[3]},eval,attack\n")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="scf.ingest.readers"):
        code, output = ingest("--source", "wmca", "--root", str(root), "--list", str(protocol), "--no-detect",
                              "--out", str(out))
    assert code == 0, output
    got = {(r["video_id"].split("/")[-1], r["split"], r["label"]) for r in rows(out)}
    assert got == {("002_01_003_2_81", "train", 0), ("002_04_010_0_82", "test", 1), ("010_01_000_3_05", "test", 0)}
    skipped = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(s["key"], s["reason"]) for s in skipped] == [(WMCA_VIDEOS[2], "list label contradicts the file name")]
    assert any("009_04_010_0_82" in m and "attack" in m for m in caplog.messages)
    from scf.ingest.base import ReaderOptions
    from scf.ingest.readers import Wmca

    assert not Wmca().precropped_for(ReaderOptions(lists=(protocol,)))  # raw videos: detection stays on


@pytest.mark.skipif(not LISTS.is_dir(), reason="reference lists of the field not on this machine (shared/ beside the checkout)")
def test_wmca_grand_test_file_of_the_field_every_line(tmp_path):
    """The real file, every line: recognised (no --label-polarity asked for), 1,679 videos, eval = 557."""
    from scf.ingest.base import ReaderOptions
    from scf.ingest.readers import Wmca, is_wmca_protocol_file

    root = tmp_path / "wmca"
    wmca_tree(root)
    real = LISTS / "casia-fas" / "IDIAP_WMCA_WMCA_Grandtest.txt"
    assert is_wmca_protocol_file(real)
    assert not is_wmca_protocol_file(LISTS / "casia-fas" / "IDIAP_WMCA_protocol_p1_video_test.txt")
    reader = Wmca()
    reader.check(root, ReaderOptions(lists=(real,)))
    assert len(reader.csv_split) == 1679 and list(reader.csv_split.values()).count("test") == 557


def test_wmca_without_protocol_file_warns_that_every_video_is_test(tmp_path, caplog):
    root = tmp_path / "wmca"
    wmca_tree(root)
    with caplog.at_level(logging.WARNING, logger="scf.ingest.readers"):
        code, output = ingest("--source", "wmca", "--root", str(root), "--no-detect", "--out", str(tmp_path / "o"))
    assert code == 0, output
    assert {r["split"] for r in rows(tmp_path / "o")} == {"test"}
    assert any("every video goes to the test split" in m and "557" in m for m in caplog.messages)


# --- L6: a run that writes no row exits non-zero with the main skip reason ------------------------------------
def test_zero_rows_exit_non_zero_with_main_skip_reason(tmp_path):
    root = tmp_path / "casia"
    grey(root / "OULU_NPU/Train_files/1_1_01_1/crop/1.png")
    bad = tmp_path / "OULU_NPU_video_train.txt"
    bad.write_text("OULU_NPU/Train_files/1_1_01_1\nOULU_NPU/Train_files/1_1_01_2 0 extra\nx\n")
    out = tmp_path / "o1"
    code, output = ingest("--source", "casia-fas-list", "--root", str(root), "--list", str(bad),
                          "--label-polarity", "live0", "--out", str(out))
    assert code == 1
    assert last_line(output) == (f"Error: 0 rows written to {out}: 3 item(s) skipped, mostly 'malformed list line' "
                                 f"(3); see {out / 'skipped.jsonl'}")
    assert len((out / "skipped.jsonl").read_text().splitlines()) == 3  # the skip log is kept

    missing = tmp_path / "OULU_NPU_video_test.txt"
    missing.write_text("OULU_NPU/Test_files/1_1_01_2 1\nOULU_NPU/Test_files/1_1_01_3 1\n")
    code, output = ingest("--source", "casia-fas-list", "--root", str(root), "--list", str(missing),
                          "--label-polarity", "live0", "--out", str(tmp_path / "o2"))
    assert code == 1 and "mostly 'missing file' (2)" in last_line(output)

    (tmp_path / "empty").mkdir()
    code, output = ingest("--source", "flip-mcio", "--root", str(tmp_path / "empty"), "--out", str(tmp_path / "o3"))
    assert code == 1 and "no file of FLIP MCIO found under --root" in last_line(output)

    # a resumed run that has nothing left to do is not an error
    ok = tmp_path / "OULU_NPU_video_dev.txt"
    ok.write_text("OULU_NPU/Train_files/1_1_01_1 0\n")
    for _ in range(2):
        code, output = ingest("--source", "casia-fas-list", "--root", str(root), "--list", str(ok),
                              "--label-polarity", "live0", "--out", str(tmp_path / "o4"))
        assert code == 0, output


# --- M3: one multi-dataset list ingest writes each entry's dataset as `source` ---------------------------------
def test_casia_fas_lists_write_each_entrys_dataset_and_source_name_overrides(tmp_path):
    root = tmp_path / "casia"
    entries = {"OULU_NPU/Test_files/1_1_01_1 0": "OULU-NPU", "MSU_MFSD/test/real/real_client001_android_SD_scene01 0":
               "MSU-MFSD", "ReplayAttack/test/real/client001_session01_webcam_authenticate_adverse_1 0":
               "Idiap Replay-Attack", "CASIA_FASD/test_release/1/1 0": "CASIA-FASD"}
    for line in entries:
        for i in range(1, 4):
            grey(root / line.split()[0] / "crop" / f"{i}.png")
    lst = tmp_path / "mixed_test.txt"
    lst.write_text("\n".join(entries) + "\n")
    out = tmp_path / "o"
    code, output = ingest("--source", "casia-fas-list", "--root", str(root), "--list", str(lst),
                          "--label-polarity", "live0", "--out", str(out))
    assert code == 0, output
    got = {r["video_id"]: r["source"] for r in rows(out)}
    assert got == {line.split()[0]: title for line, title in entries.items()}
    assert json.loads((out / "ingest_config.json").read_text())["source_name"] == "dataset of each entry"

    code, output = ingest("--source", "casia-fas-list", "--root", str(root), "--list", str(lst),
                          "--label-polarity", "live0", "--source-name", "Mine", "--out", str(tmp_path / "o2"))
    assert code == 0, output
    assert {r["source"] for r in rows(tmp_path / "o2")} == {"Mine"}


def test_dataset_reader_with_casia_fas_list_is_precropped_unless_detect(tmp_path):
    root = tmp_path / "casia"
    video = "CASIA_HiFiMask/Data/3_24_0_1_1_1"
    for i in range(1, 4):
        grey(root / video / "crop" / f"{i}.png")
    lst = tmp_path / "CASIA_HiFiMask_protocol_CASIA_HiFiMask_p1_video_test.txt"
    lst.write_text(f"{video} 0\n")
    out = tmp_path / "o"
    code, output = ingest("--source", "hifimask", "--root", str(root), "--list", str(lst), "--label-polarity",
                          "live0", "--out", str(out))
    assert code == 0, output  # grey crops: with detection every frame would be "no face detected"
    assert json.loads((out / "ingest_config.json").read_text())["detect"] is False
    assert {(r["source"], r["label"]) for r in rows(out)} == {("HiFiMask", 1)}
    code, output = ingest("--source", "hifimask", "--root", str(root), "--list", str(lst), "--label-polarity",
                          "live0", "--detect", "--out", str(tmp_path / "o2"))
    assert code == 1 and "mostly 'no face detected'" in last_line(output)


# --- H1: FLIP's CelebA-Spoof lists ----------------------------------------------------------------------------
def test_flip_celeb_lists_and_per_entry_sources(tmp_path):
    root = tmp_path / "frame"
    fake = ["celeb/fake/563_spoof_348234.jpg", "celeb/fake/997_live_125049.jpg"]  # the 2nd: as in FLIP's list
    real = ["celeb/real/10_live_000001.jpg"]
    msu = "msu/test/real/real_client026_laptop_SD_scene01_frame0.png"
    for rel in (*fake, *real, msu, msu.replace("_frame0", "_frame1")):
        grey(root / rel)
    (tmp_path / "celeb_fake_train.txt").write_text("\n".join(fake) + "\n")
    (tmp_path / "celeb_real_train.txt").write_text("\n".join(real) + "\n")
    (tmp_path / "msu_real_test.txt").write_text(msu + "\n")
    out = tmp_path / "o"
    lists = [a for n in ("celeb_fake_train", "celeb_real_train", "msu_real_test")
             for a in ("--list", str(tmp_path / f"{n}.txt"))]
    code, output = ingest("--source", "flip-mcio", "--root", str(root), *lists, "--out", str(out))
    assert code == 0, output
    got = {r["path"]: r for r in rows(out)}
    assert len(got) == 5
    for rel in (*fake, *real):
        r = got[rel]
        assert (r["source"], r["split"], r["frame_index"]) == ("CelebA-Spoof", "train", 0)
        assert r["label"] == (1 if "/real/" in rel else 0)
        assert r["attack_type"] == ("live" if "/real/" in rel else "other")
    assert "name says live" in got[fake[1]]["attack_detail"]  # the folder (FLIP's label) wins
    assert {got[msu]["source"], got[msu]["split"]} == {"MSU-MFSD", "test"}

    (tmp_path / "bad").mkdir()
    grey(tmp_path / "bad/celeb/real/5_spoof_1.jpg")
    code, output = ingest("--source", "flip-mcio", "--root", str(tmp_path / "bad"), "--out", str(tmp_path / "o2"))
    assert code == 1 and "mostly 'folder label contradicts the file name' (1)" in last_line(output)


# --- M4: HKBU-MARs V2 is not written as V1+ -------------------------------------------------------------------
def test_hkbu_v2_lists_and_layouts_get_their_own_source(tmp_path):
    root = tmp_path / "casia"
    for line in ("HKBU/real/03/07_06_03", "HKBU/attack/03/07_06_03"):
        for i in range(1, 4):
            grey(root / line / "crop" / f"{i}.png")
    real, attack = tmp_path / "HKBUv2_real.txt", tmp_path / "HKBUv2_attack.txt"
    real.write_text("HKBU/real/03/07_06_03 1\n")
    attack.write_text("HKBU/attack/03/07_06_03 0\n")
    for source in ("casia-fas-list", "hkbu-mars"):
        out = tmp_path / source
        code, output = ingest("--source", source, "--root", str(root), "--list", str(real), "--list", str(attack),
                              "--label-polarity", "live1", "--out", str(out))
        assert code == 0, output
        assert {(r["source"], r["label"]) for r in rows(out)} == {("HKBU-MARs-V2", 1), ("HKBU-MARs-V2", 0)}

    for name, title in (("HKBU-MARs-V2", "HKBU-MARs-V2"), ("hkbu", "HKBU-MARs-V1+")):
        layout = tmp_path / name
        for rel in ("real/03/07_06_03", "mask/03/07_06_03"):
            for i in range(1, 4):
                grey(layout / rel / f"{i}.png")
        out = tmp_path / f"raw-{name}"
        code, output = ingest("--source", "hkbu-mars", "--root", str(layout), "--no-detect", "--out", str(out))
        assert code == 0, output
        assert {r["source"] for r in rows(out)} == {title}
        summary = json.loads((out / "ingest_summary.json").read_text())
        assert summary["title"] == title  # the summary and card name what the rows hold


# --- review 2, L2: CelebA-Spoof's spoof types for list-read rows ---------------------------------------------
def test_celeba_labels_give_spoof_types_to_flip_and_casia_fas_list_rows(tmp_path):
    """Without --celeba-labels list-read CelebA-Spoof attacks are 'other' (SCF would filter their captions with
    the 'other' keywords); with CelebA-Spoof's label file they get their type (entry 40 of the vector)."""
    vector = [0] * 44
    labels = {}
    for key, code in (("Data/train/563/spoof/348234.jpg", 8), ("Data/test/8414/spoof/538824.png", 2)):
        v = list(vector)
        v[40] = code
        labels[key] = v
    metas = tmp_path / "metas" / "intra_test"
    metas.mkdir(parents=True)
    (metas / "train_label.json").write_text(json.dumps({k: v for k, v in labels.items() if "/train/" in k}))
    (metas / "test_label.json").write_text(json.dumps({k: v for k, v in labels.items() if "/test/" in k}))

    root = tmp_path / "frame"
    grey(root / "celeb/fake/563_spoof_348234.jpg")
    (tmp_path / "celeb_fake_train.txt").write_text("celeb/fake/563_spoof_348234.jpg\n")
    args = ["--source", "flip-mcio", "--root", str(root), "--list", str(tmp_path / "celeb_fake_train.txt")]
    code, output = ingest(*args, "--out", str(tmp_path / "o1"))
    assert code == 0, output
    assert [r["attack_type"] for r in rows(tmp_path / "o1")] == ["other"]
    code, output = ingest(*args, "--celeba-labels", str(tmp_path / "metas"), "--out", str(tmp_path / "o2"))
    assert code == 0, output
    assert [(r["attack_type"], r["attack_detail"]) for r in rows(tmp_path / "o2")] == [("replay", "pad")]
    # the setting is part of what a resume keeps
    code, output = ingest(*args, "--out", str(tmp_path / "o2"))
    assert code == 1 and "--celeba-labels" in last_line(output)

    casia = tmp_path / "casia"
    for i in range(1, 3):
        grey(casia / "CelebA_Spoof/Data/test/8414/spoof/538824" / "crop" / f"{i}.png")
    lst = tmp_path / "CelebA_Spoof_image_test.txt"
    lst.write_text("CelebA_Spoof/Data/test/8414/spoof/538824 0\n")
    code, output = ingest("--source", "casia-fas-list", "--root", str(casia), "--list", str(lst), "--label-polarity",
                          "live1", "--celeba-labels", str(metas / "test_label.json"), "--out", str(tmp_path / "o3"))
    assert code == 0, output
    assert {(r["source"], r["attack_type"], r["attack_detail"]) for r in rows(tmp_path / "o3")} == {
        ("CelebA-Spoof", "print", "poster")}
    code, output = ingest(*args, "--celeba-labels", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o4"))
    assert code == 1 and "--celeba-labels" in last_line(output) and "no such file or folder" in last_line(output)


def test_folder_from_an_older_scf_with_one_source_for_every_row_is_not_mixed(tmp_path):
    """Before per-entry sources, flip-mcio wrote 'FLIP MCIO' in every row: resuming such a folder must not add
    rows named per dataset (the protocols would find half of each dataset)."""
    root = tmp_path / "frame"
    msu = "msu/test/real/real_client026_laptop_SD_scene01_frame0.png"
    for rel in (msu, msu.replace("_frame0", "_frame1")):
        grey(root / rel)
    out = tmp_path / "o"
    code, output = ingest("--source", "flip-mcio", "--root", str(root), "--out", str(out))
    assert code == 0, output
    cfg = out / "ingest_config.json"
    legacy = {k: v for k, v in json.loads(cfg.read_text()).items() if k not in ("source_name", "celeba_labels")}
    cfg.write_text(json.dumps(legacy))  # as the older scf wrote it
    code, output = ingest("--source", "flip-mcio", "--root", str(root), "--out", str(out))
    assert code == 1 and "older scf ingest that gave every row the source 'FLIP MCIO'" in last_line(output)
    code, output = ingest("--source", "flip-mcio", "--root", str(root), "--out", str(out),
                          "--source-name", "FLIP MCIO")
    assert code == 0, output


def test_celeba_spoof_with_a_list_types_rows_from_the_label_files_under_root(tmp_path):
    """`--source celeba-spoof --list`: the release's metas/intra_test/*_label.json under --root types the list's
    attacks, as it does without --list (they were found, then ignored, leaving every attack 'other')."""
    v = [0] * 44
    v[40] = 8  # pad: replay
    root = tmp_path / "CelebA_Spoof"
    (root / "metas" / "intra_test").mkdir(parents=True)
    (root / "metas/intra_test/train_label.json").write_text(json.dumps({"Data/train/563/spoof/348234.jpg": v}))
    grey(root / "Data/train/563/spoof/348234.jpg")
    lst = tmp_path / "CelebA_Spoof_image_train.txt"
    lst.write_text("Data/train/563/spoof/348234.jpg 0\n")
    code, output = ingest("--source", "celeba-spoof", "--root", str(root), "--list", str(lst), "--label-polarity",
                          "live1", "--no-detect", "--out", str(tmp_path / "o"))
    assert code == 0, output
    assert [(r["attack_type"], r["attack_detail"]) for r in rows(tmp_path / "o")] == [("replay", "pad")]
