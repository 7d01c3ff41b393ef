"""Each reader on a fake tree of its layout (real file names; placeholder files: scanning decodes nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scf.ingest import IngestError, Item, ReaderOptions, Skip, get_reader

LISTS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "lists"

# source -> (files to create, expected {path: (label, attack_type, split, subject_id, video_id)}, skips)
LAYOUTS = {
    "msu-mfsd": (
        ["scene01/real/real_client002_android_SD_scene01.mp4",
         "scene01/attack/attack_client002_laptop_SD_printed_photo_scene01.mov",
         "scene01/attack/attack_client013_android_SD_ipad_video_scene01.mp4",
         "scene01/attack/attack_client099_android_SD_ipad_video_scene01.mp4",
         "scene01/real/README.mp4"],
        {"scene01/real/real_client002_android_SD_scene01.mp4": (1, "live", "train", "002",
                                                                "scene01/real/real_client002_android_SD_scene01"),
         "scene01/attack/attack_client002_laptop_SD_printed_photo_scene01.mov": (0, "print", "train", "002", None),
         "scene01/attack/attack_client013_android_SD_ipad_video_scene01.mp4": (0, "replay", "test", "013", None)},
        {"scene01/attack/attack_client099_android_SD_ipad_video_scene01.mp4": "no split rule",
         "scene01/real/README.mp4": "no naming rule"},
    ),
    "casia-fasd": (
        ["train_release/8/2.avi", "train_release/8/HR_4.avi", "test_release/28/5.avi", "test_release/28/9.avi"],
        {"train_release/8/2.avi": (1, "live", "train", "train-8", "train_release/8/2"),
         "train_release/8/HR_4.avi": (0, "replay", "train", "train-8", None),
         "test_release/28/5.avi": (0, "print", "test", "test-28", None)},
        {"test_release/28/9.avi": "no naming rule"},
    ),
    "replay-attack": (
        ["train/real/client008_session01_webcam_authenticate_adverse_1.mov",
         "devel/attack/fixed/attack_print_client101_session01_highdef_photo_controlled.mov",
         "test/attack/hand/attack_mobile_client014_session01_mobile_video_adverse.mov",
         "enroll/train/client008_session01_webcam_enroll_adverse.mov"],
        {"train/real/client008_session01_webcam_authenticate_adverse_1.mov": (1, "live", "train", "008", None),
         "devel/attack/fixed/attack_print_client101_session01_highdef_photo_controlled.mov":
             (0, "print", "dev", "101", None),
         "test/attack/hand/attack_mobile_client014_session01_mobile_video_adverse.mov": (0, "replay", "test", "014", None)},
        {"enroll/train/client008_session01_webcam_enroll_adverse.mov": "not in the protocol"},
    ),
    "oulu-npu": (
        ["Train_files/6_3_19_1.avi", "Dev_files/5_2_29_4.avi", "Test_files/2_1_52_2.avi"],
        {"Train_files/6_3_19_1.avi": (1, "live", "train", "19", "Train_files/6_3_19_1"),
         "Dev_files/5_2_29_4.avi": (0, "replay", "dev", "29", None),
         "Test_files/2_1_52_2.avi": (0, "print", "test", "52", None)},
        {},
    ),
    "siw": (
        ["Train/live/150/150-1-1-2-2.mov", "Test/spoof/018/018-1-3-2-1.mov", "Test/spoof/018/018-1-2-2-2.mov"],
        {"Train/live/150/150-1-1-2-2.mov": (1, "live", "train", "150", None),
         "Test/spoof/018/018-1-3-2-1.mov": (0, "replay", "test", "018", None),
         "Test/spoof/018/018-1-2-2-2.mov": (0, "print", "test", "018", None)},
        {},
    ),
    "rose-youtu": (
        ["2/G_NT_HS_g_E_2_1.mp4", "2/Ps_T_5s_wg_E_2_2.mp4", "3/Vl_NT_ZTE_g_E_3_1.mp4", "3/Mu_T_IP_g_E_3_4.mp4"],
        {"2/G_NT_HS_g_E_2_1.mp4": (1, "live", "test", "2", None),
         "2/Ps_T_5s_wg_E_2_2.mp4": (0, "print", "test", "2", None),
         "3/Vl_NT_ZTE_g_E_3_1.mp4": (0, "replay", "test", "3", None),
         "3/Mu_T_IP_g_E_3_4.mp4": (0, "print", "test", "3", None)},
        {},
    ),
    "hkbu-mars": (
        ["real/03/07_06_03.avi", "mask/03/07_06_03.avi"],
        {"real/03/07_06_03.avi": (1, "live", "test", "03", "real/03/07_06_03"),
         "mask/03/07_06_03.avi": (0, "mask", "test", "03", "mask/03/07_06_03")},
        {},
    ),
    "wmca": (
        ["face-station/17.01.18/002_01_000_0_00.mp4", "face-station/14.03.18/002_04_010_2_82.mp4",
         "face-station/14.03.18/002_04_010_3_13.mp4"],
        {"face-station/17.01.18/002_01_000_0_00.mp4": (1, "live", "test", "002", None),
         "face-station/14.03.18/002_04_010_2_82.mp4": (0, "mask", "test", "002", None),
         "face-station/14.03.18/002_04_010_3_13.mp4": (0, "print", "test", "002", None)},
        {},
    ),
    "siw-m-v2": (
        ["Live/1.mov", "Makeup_Im/7.mov", "Mask_Trans/2.mov", "Partial_Eye/4.mov", "Replay/5.mov"],
        {"Live/1.mov": (1, "live", "test", "1", None), "Makeup_Im/7.mov": (0, "makeup", "test", "7", None),
         "Mask_Trans/2.mov": (0, "mask", "test", "2", None), "Partial_Eye/4.mov": (0, "other", "test", "4", None),
         "Replay/5.mov": (0, "replay", "test", "5", None)},
        {},
    ),
    "casia-surf-3dmask": (
        ["Real/0928_018/16/0001.jpg", "Real/0928_018/16/0002.jpg", "Fake/0928_018/2/3/0001.jpg"],
        {"Real/0928_018/16": (1, "live", "test", "0928_018", "Real/0928_018/16"),
         "Fake/0928_018/2/3": (0, "mask", "test", "0928_018", "Fake/0928_018/2/3")},
        {},
    ),
    "hifimask": (
        ["Data/3_48_1_1_1_5/crop/1.png", "Data/3_48_1_1_1_5/crop/2.png", "Data/1_02_0_3_2_6/1.png",
         "Data/2_05_2_1_1_1/1.png"],
        {"Data/3_48_1_1_1_5/crop": (0, "mask", "test", "48", "Data/3_48_1_1_1_5"),
         "Data/1_02_0_3_2_6": (1, "live", "test", "02", "Data/1_02_0_3_2_6"),
         "Data/2_05_2_1_1_1": (0, "mask", "train", "05", None)},  # subject 05: not a protocol-1 test subject
        {},
    ),
    "celeba-spoof": (
        ["Data/train/4980/live/494400.jpg", "Data/train/4980/spoof/494405.png", "Data/test/8414/spoof/538824.png",
         "Data/test/8414/other/1.png"],
        {"Data/train/4980/live/494400.jpg": (1, "live", "train", "4980", "Data/train/4980/live/494400"),
         "Data/train/4980/spoof/494405.png": (0, "replay", "train", "4980", None),
         "Data/test/8414/spoof/538824.png": (0, "other", "test", "8414", None)},
        {"Data/test/8414/other/1.png": "no naming rule"},
    ),
}


def _touch(root: Path, files):
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


@pytest.mark.parametrize("source", sorted(LAYOUTS))
def test_reader_maps_its_layout(tmp_path, source):
    files, expected, skips = LAYOUTS[source]
    _touch(tmp_path, files)
    if source == "msu-mfsd":
        (tmp_path / "train_sub_list.txt").write_text("02\n")
        (tmp_path / "test_sub_list.txt").write_text("13\n")
    if source == "celeba-spoof":
        (tmp_path / "metas/intra_test").mkdir(parents=True)
        vector = [0] * 44
        vector[40] = 8  # pad -> replay
        (tmp_path / "metas/intra_test/train_label.json").write_text(
            json.dumps({"Data/train/4980/spoof/494405.png": vector}))
    reader = get_reader(source)
    options = ReaderOptions()
    reader.check(tmp_path, options)
    out = list(reader.scan(tmp_path, options))
    items = {e.path: e for e in out if isinstance(e, Item)}
    got_skips = {e.path: e.reason for e in out if isinstance(e, Skip)}
    assert got_skips == skips
    assert set(items) == set(expected)
    for path, (label, attack, split, subject, video_id) in expected.items():
        it = items[path]
        assert (it.meta.label, it.meta.attack_type, it.split, it.meta.subject_id) == (label, attack, split, subject)
        if video_id:
            assert it.video_id == video_id
    assert reader.title and reader.layout and "licence" in reader.license_note


def test_wrong_layout_fails_before_work(tmp_path):
    (tmp_path / "random").mkdir()
    for source in ("oulu-npu", "casia-fasd", "casia-surf-3dmask", "image-folder"):
        with pytest.raises(IngestError, match="layout|folder"):
            get_reader(source).check(tmp_path, ReaderOptions())
    with pytest.raises(IngestError, match="train_sub_list"):
        (tmp_path / "scene01").mkdir()
        get_reader("msu-mfsd").check(tmp_path, ReaderOptions())


def test_wmca_grandtest_csv_sets_the_split(tmp_path):
    files = ["face-station/17.01.18/002_01_003_2_81.mp4", "face-station/14.03.18/002_04_010_0_82.mp4",
             "face-station/14.03.18/009_04_010_0_82.mp4"]
    _touch(tmp_path, files)
    csv = tmp_path / "grandtest.csv"
    csv.write_text(",client_id,filepath,group,label\n1,2,face-station/17.01.18/002_01_003_2_81,train,attack\n"
                   "2,2,face-station/14.03.18/002_04_010_0_82,eval,bonafide\n")
    reader, options = get_reader("wmca"), ReaderOptions(lists=(csv,))
    reader.check(tmp_path, options)
    out = {e.path: e for e in reader.scan(tmp_path, options)}
    assert out[files[0]].split == "train" and out[files[1]].split == "test"
    assert out[files[2]].reason == "no split rule"


def test_wmca_hdf5_only_is_a_clear_error(tmp_path):
    _touch(tmp_path, ["face-station/17.01.18/002_01_003_2_81.hdf5"])
    with pytest.raises(IngestError, match="HDF5"):
        get_reader("wmca").check(tmp_path, ReaderOptions())


def test_hifimask_test_subjects_are_those_of_the_protocol_1_test_list():
    """The reader's test subjects are exactly the subjects of CASIA-FAS-Dataset's HiFiMask p1 test list."""
    from scf.ingest.readers import HIFIMASK_P1_TEST_SUBJECTS

    lst = LISTS / "casia-fas" / "CASIA_HiFiMask_protocol_CASIA_HiFiMask_p1_video_test.txt"
    if not lst.is_file():
        pytest.skip(f"{lst} is not on this machine")
    subjects = {line.split()[0].rsplit("/", 1)[-1].split("_")[1] for line in lst.read_text().splitlines() if line}
    assert subjects == HIFIMASK_P1_TEST_SUBJECTS
