"""Naming rules of the twelve datasets, checked against the real list files of the field (FLIP's MCIO lists, CASIA-FAS-Dataset's dg_protocol lists)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path, PurePosixPath

import pytest

from scf.ingest import naming
from scf.ingest.base import Meta, split_from_parts
from scf.ingest.registry import SOURCES, canonical_name

# the field's list files, in the shared/ folder beside the checkout (FACTS.md, reference/lists)
LISTS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "lists"
needs_lists = pytest.mark.skipif(not LISTS.is_dir(), reason="reference lists of the field not on this machine")


def _casia(name):
    lines = (LISTS / "casia-fas" / name).read_text().split("\n")
    return [(PurePosixPath(p), int(lab)) for p, lab in (line.split() for line in lines if line.strip())]


@needs_lists
@pytest.mark.parametrize("list_name,live_label,expected", [
    # list, the label meaning live in that list, (live, fake) counts of the list
    ("OULU_NPU_video_test.txt", 0, (360, 1440)),
    ("ReplayAttack_video_test.txt", 0, (80, 400)),
    ("CASIA_FASD_video_test.txt", 0, (90, 270)),
    ("MSU_MFSD_video_test.txt", 0, (40, 120)),
    ("SiW_protocol_SiW_p1_video_test.txt", 1, (599, 1455)),
    ("HKBUv2_real.txt", 1, (504, 0)),
    ("HKBUv2_attack.txt", 1, (0, 504)),
    ("3DMask_Real.txt", 1, (288, 0)),
    ("3DMask_Fake.txt", 1, (0, 858)),
    ("IDIAP_WMCA_protocol_p1_video_test.txt", 0, (115, 442)),
    ("CASIA_HiFiMask_protocol_CASIA_HiFiMask_p1_video_test.txt", 0, (4335, 13027)),
])
def test_every_list_entry_parses_with_the_label_of_the_list(list_name, live_label, expected):
    entries = _casia(list_name)
    live = fake = 0
    for path, label in entries:
        dataset = naming.dataset_of(path)
        meta = naming.PARSERS[dataset](path)
        assert meta is not None, path
        assert (meta.label == 1) == (label == live_label), path
        live, fake = live + meta.label, fake + (1 - meta.label)
    assert (live, fake) == expected


@needs_lists
def test_celeba_spoof_test_list_labels_come_from_the_folders():
    entries = _casia("CelebA_Spoof_image_test.txt")[:2000]
    for path, label in entries:
        meta = naming.parse_celeba_spoof(path)
        assert meta.label == label and meta.split == "test" and meta.subject_id == path.parts[2]


@needs_lists
def test_attack_types_per_dataset_from_real_names():
    def types(list_name):
        return Counter(naming.PARSERS[naming.dataset_of(p)](p).attack_type for p, _ in _casia(list_name))

    assert types("OULU_NPU_video_train.txt") == {"live": 360, "print": 720, "replay": 720}
    assert types("CASIA_FASD_video_train.txt") == {"live": 60, "print": 120, "replay": 60}
    assert set(types("ReplayAttack_video_train.txt")) == {"live", "print", "replay"}
    assert set(types("MSU_MFSD_video_train.txt")) == {"live", "print", "replay"}
    assert set(types("SiW_protocol_SiW_p1_video_train.txt")) == {"live", "print", "replay"}
    assert set(types("CASIA_HiFiMask_protocol_CASIA_HiFiMask_p1_video_test.txt")) == {"live", "mask"}
    assert set(types("IDIAP_WMCA_protocol_p1_video_test.txt")) == {"live", "other", "mask", "print", "replay"}


@needs_lists
@pytest.mark.parametrize("ds", ["casia", "msu", "replay", "oulu"])
def test_flip_mcio_lists_parse_with_folder_label_and_split(ds):
    for kind in ("real", "fake"):
        for path in (LISTS / "flip-mcio").glob(f"{ds}_{kind}_*.txt"):
            for line in path.read_text().split():
                p = PurePosixPath(line)
                meta = naming.PARSERS[naming.dataset_of(p)](p)
                assert meta is not None, line
                assert meta.label == (kind == "real"), line
                assert meta.split == p.parts[1]


def test_native_layout_names():
    p = PurePosixPath
    assert naming.parse_oulu_npu(p("Dev_files/3_1_28_4.avi")) == Meta(0, "replay", "phone_3/session_1/display_1",
                                                                    "28", "dev")
    assert naming.parse_oulu_npu(p("3_1_44_1.avi")).split == "test"  # user partition when no folder says
    m = naming.parse_casia_fasd(p("test_release/28/HR_3.avi"))
    assert (m.label, m.attack_type, m.subject_id, m.split) == (0, "print", "test-28", "test")
    m = naming.parse_replay_attack(p("devel/attack/hand/attack_highdef_client030_session01_highdef_photo_adverse.mov"))
    assert (m.attack_type, m.attack_detail, m.subject_id, m.split) == ("replay", "hand/highdef_photo/adverse", "030", "dev")
    m = naming.parse_replay_attack(p("train/attack/fixed/attack_print_client001_session01_highdef_photo_controlled.mov"))
    assert m.attack_type == "print"
    m = naming.parse_msu(p("scene01/attack/attack_client002_android_SD_iphone_video_scene01.mp4"))
    assert (m.attack_type, m.subject_id) == ("replay", "002")
    assert naming.parse_msu(p("scene01/real/real_client002_laptop_SD_scene01.mov")).attack_type == "live"
    m = naming.parse_siw(p("Train/spoof/003/003-1-2-1-1.mov"))
    assert (m.attack_type, m.subject_id, m.split) == ("print", "003", "train")
    assert naming.parse_rose_youtu(p("test/12/Vm_T_5s_g_E_12_1.mp4")).attack_type == "replay"
    assert naming.parse_rose_youtu(p("2/Mc_NT_HW_wg_E_2_3.mp4")).attack_type == "print"
    m = naming.parse_rose_youtu(p("G_NT_HS_g_E_23_1.mp4"))
    assert (m.label, m.subject_id) == (1, "23")
    assert naming.parse_siw_m(p("Makeup_Co/12_1.mov")).attack_type == "makeup"
    assert naming.parse_siw_m(p("Mask_Mann/3.mov")).attack_type == "mannequin"
    assert naming.parse_siw_m(p("Partial_Funnyeye/3.mov")).attack_type == "other"
    assert naming.parse_siw_m(p("Mask_Paper/3.mov")).attack_type == "print"
    assert naming.parse_siw_m(p("Mask_Silicone/3.mov")).attack_type == "mask"
    assert naming.parse_siw_m(p("Live/3.mov")).label == 1
    assert naming.parse_wmca(p("face-station/17.01.18/002_01_003_4_81.mp4")).attack_type == "replay"
    assert naming.parse_hkbu_mars(p("mask/ThatsMyFace/05/01.avi")).attack_detail == "ThatsMyFace"
    for bad, parser in [("9_9_99_9.avi", naming.parse_oulu_npu), ("train_release/1/9.avi", naming.parse_casia_fasd),
                        ("X_1_2.mp4", naming.parse_rose_youtu), ("notes/readme.mov", naming.parse_siw_m)]:
        assert parser(p(bad)) is None


def test_split_folders_and_registry_aliases():
    assert split_from_parts(("Train_files",)) == "train"
    assert split_from_parts(("x", "devel", "real")) == "dev"
    assert split_from_parts(("test_release",)) == "test"
    assert split_from_parts(("contest",)) is None
    assert canonical_name("OULU-NPU") == "oulu-npu" and canonical_name("msu") == "msu-mfsd"
    assert len([n for n in SOURCES if n in naming.PARSERS]) == 12
