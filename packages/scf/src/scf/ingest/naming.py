"""Naming rules of the twelve FAS datasets: file or video name -> label, attack type, subject, split.

One pure function per dataset, ``parse_<dataset>(path) -> Meta | None`` (None: the name matches no rule of
that dataset). They read the path relative to the dataset root, so they serve the dataset's delivered layout,
FLIP's MCIO crops and the CASIA-FAS-Dataset lists alike. Each function's docstring names the source of its
mapping; ``docs/ingest.md`` repeats them per dataset. Label polarity: real = 1 (`scf.schema`).

Attack types use the closed vocabulary `scf.schema.ATTACK_TYPES`; the dataset's own sub-type goes to
``attack_detail``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

from scf.schema import LABEL_FAKE, LABEL_REAL

from .base import IngestError, Meta, split_from_parts

FLIP_FRAME_SUFFIX = re.compile(r"_frame(\d+)$")


def _stem(path: PurePosixPath) -> str:
    """File stem without a media extension and without FLIP's ``_frameN`` suffix."""
    name = path.name
    if path.suffix.lower() in _MEDIA_SUFFIXES:
        name = name[: -len(path.suffix)]
    return FLIP_FRAME_SUFFIX.sub("", name)


_MEDIA_SUFFIXES = {".avi", ".mov", ".mp4", ".m4v", ".mkv", ".webm", ".wmv", ".mpg", ".mpeg", ".3gp", ".flv",
                   ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif", ".hdf5",
                   ".h5"}


def _live(subject: str = "", split: str | None = None, detail: str = "") -> Meta:
    return Meta(LABEL_REAL, "live", detail, subject, split)


def _fake(attack: str, detail: str, subject: str = "", split: str | None = None) -> Meta:
    return Meta(LABEL_FAKE, attack, detail, subject, split)


# --- MSU-MFSD ----------------------------------------------------------------------------------------
_MSU = re.compile(r"^(?P<kind>real|attack)_client(?P<subject>\d+)_(?P<device>android|laptop)_SD_"
                  r"(?:(?P<medium>ipad_video|iphone_video|printed_photo)_)?scene01$", re.IGNORECASE)


def parse_msu(path: PurePosixPath) -> Meta | None:
    """MSU-MFSD: ``real_client<NNN>_<android|laptop>_SD_scene01``, ``attack_client<NNN>_<device>_SD_<medium>_scene01``.

    ``printed_photo`` -> print; ``ipad_video``, ``iphone_video`` -> replay; ``real_*`` -> live (MSU-MFSD
    README; sunyiyou/SAFAS ``datasets/meta.py``). Subject = client number (3 digits). Split: the subject
    lists ``train_sub_list.txt`` / ``test_sub_list.txt`` of the release (applied by the reader), else the
    ``train``/``test`` folder of FLIP's crops.
    """
    m = _MSU.match(_stem(path))
    if not m:
        return None
    subject, device = m["subject"].zfill(3), m["device"].lower()
    split = split_from_parts(path.parts[:-1])
    if m["kind"].lower() == "real":
        if m["medium"]:
            return None
        return _live(subject, split, device)
    medium = (m["medium"] or "").lower()
    if not medium:
        return None
    return _fake("print" if medium == "printed_photo" else "replay", f"{device}/{medium}", subject, split)


# --- CASIA-FASD --------------------------------------------------------------------------------------
_CASIA_VIDEO = {"1": ("live", "low quality"), "2": ("live", "normal quality"), "HR_1": ("live", "high quality")}
for _q, _videos in (("low quality", "357"), ("normal quality", "468")):
    for _v, _kind in zip(_videos, ("warped_photo", "cut_photo", "video"), strict=True):
        _CASIA_VIDEO[_v] = ("replay" if _kind == "video" else "print", f"{_kind}/{_q}")
for _v, _kind in (("HR_2", "warped_photo"), ("HR_3", "cut_photo"), ("HR_4", "video")):
    _CASIA_VIDEO[_v] = ("replay" if _kind == "video" else "print", f"{_kind}/high quality")
_CASIA_NATIVE = re.compile(r"^(HR_[1-4]|[1-8])$")
_CASIA_FLIP = re.compile(r"^(?P<subject>\d+)_(?P<video>HR_[1-4]|[1-8])$")


def parse_casia_fasd(path: PurePosixPath) -> Meta | None:
    """CASIA-FASD: ``{train,test}_release/<subject>/<video>.avi`` with video 1-8 or HR_1-HR_4.

    1, 2, HR_1 live; 3, 4, HR_2 warped photo and 5, 6, HR_3 cut photo -> print; 7, 8, HR_4 video -> replay;
    odd numbers low quality, even numbers normal quality, HR high quality (CASIA-FASD paper, Zhang et al.
    ICB 2012; sunyiyou/SAFAS ``datasets/meta.py``). Also FLIP's ``<subject>_<video>_frame0.png``.
    Train and test subjects are numbered separately (1-20, 1-30), so the subject id is ``train-<n>`` /
    ``test-<n>``. Split: ``train_release`` -> train, ``test_release`` -> test.
    """
    stem = _stem(path)
    split = split_from_parts(path.parts[:-1])
    m = _CASIA_NATIVE.match(stem)
    if m and len(path.parts) >= 2 and path.parts[-2].isdigit():
        subject, video = path.parts[-2], m[1]
    else:
        m = _CASIA_FLIP.match(stem)
        if not m:
            return None
        subject, video = m["subject"], m["video"]
    subject_id = f"{split}-{int(subject)}" if split else str(int(subject))
    attack, detail = _CASIA_VIDEO[video]
    if attack == "live":
        return _live(subject_id, split, detail)
    return _fake(attack, detail, subject_id, split)


# --- Idiap Replay-Attack -----------------------------------------------------------------------------
_REPLAY_REAL = re.compile(r"^(?:real_)?client(?P<subject>\d+)_session\d+_webcam_authenticate_"
                          r"(?P<light>adverse|controlled)_\d+$", re.IGNORECASE)
_REPLAY_ATTACK = re.compile(r"^(?:(?P<support>fixed|hand)_)?attack_(?P<device>print|mobile|highdef)_"
                            r"client(?P<subject>\d+)_session\d+_(?P<medium>[a-z]+)_(?P<what>photo|video)_"
                            r"(?P<light>adverse|controlled)$", re.IGNORECASE)


def parse_replay_attack(path: PurePosixPath) -> Meta | None:
    """Idiap Replay-Attack: ``{train,devel,test}/real/client<NNN>_session01_webcam_authenticate_<light>_<k>``
    and ``{train,devel,test}/attack/{fixed,hand}/attack_<device>_client<NNN>_session01_<medium>_<photo|video>_<light>``.

    ``attack_print`` -> print; ``attack_mobile``, ``attack_highdef`` (photo or video shown on an iPhone or an
    iPad) -> replay (Replay-Attack README, Chingovska et al. BIOSIG 2012; sunyiyou/SAFAS
    ``datasets/meta.py``). ``enroll/`` videos are not part of the anti-spoofing protocol (the reader skips
    them with that reason). Also FLIP's ``real_client...`` / ``{fixed,hand}_attack_...`` crops. Split: ``devel`` -> dev.
    """
    parts_lower = [p.lower() for p in path.parts[:-1]]
    split = split_from_parts(path.parts[:-1])
    stem = _stem(path)
    m = _REPLAY_REAL.match(stem)
    if m:
        return _live(m["subject"].zfill(3), split, m["light"].lower())
    m = _REPLAY_ATTACK.match(stem)
    if not m:
        return None
    support = (m["support"] or next((p for p in parts_lower if p in ("fixed", "hand")), "")).lower()
    device = m["device"].lower()
    detail = "/".join(x for x in (support, f"{device}_{m['what'].lower()}", m["light"].lower()) if x)
    return _fake("print" if device == "print" else "replay", detail, m["subject"].zfill(3), split)


# --- OULU-NPU ----------------------------------------------------------------------------------------
_OULU = re.compile(r"^(?P<phone>[1-6])_(?P<session>[1-3])_(?P<user>\d{2})_(?P<access>[1-5])$")
_OULU_ACCESS = {"1": ("live", ""), "2": ("print", "printer_1"), "3": ("print", "printer_2"),
                "4": ("replay", "display_1"), "5": ("replay", "display_2")}


def oulu_split_of_user(user: int) -> str:
    """OULU-NPU's fixed user partition: users 1-20 train, 21-35 dev, 36-55 test (OULU-NPU README)."""
    return "train" if user <= 20 else "dev" if user <= 35 else "test"


def parse_oulu_npu(path: PurePosixPath) -> Meta | None:
    """OULU-NPU: ``{Train,Dev,Test}_files/<phone>_<session>_<user>_<access>.avi``.

    Access 1 live; 2, 3 print (printers 1, 2); 4, 5 replay (displays 1, 2) (OULU-NPU README, Boulkenafet et
    al. FG 2017; sunyiyou/SAFAS ``datasets/meta.py``). Subject = user. Split: the ``*_files`` folder (or
    FLIP's ``train``/``test``); otherwise the fixed user partition (1-20 train, 21-35 dev, 36-55 test).
    """
    m = _OULU.match(_stem(path))
    if not m:
        return None
    split = split_from_parts(path.parts[:-1]) or oulu_split_of_user(int(m["user"]))
    attack, detail = _OULU_ACCESS[m["access"]]
    detail = "/".join(x for x in (f"phone_{m['phone']}", f"session_{m['session']}", detail) if x)
    if attack == "live":
        return _live(m["user"], split, detail)
    return _fake(attack, detail, m["user"], split)


# --- SiW ---------------------------------------------------------------------------------------------
_SIW = re.compile(r"^(?P<subject>\d{3})-(?P<sensor>\d)-(?P<type>[1-3])-(?P<medium>\d)-(?P<session>\d)$")


def parse_siw(path: PurePosixPath) -> Meta | None:
    """SiW: ``{Train,Test}/{live,spoof}/<subject>/<subject>-<sensor>-<type>-<medium>-<session>.mov``.

    Type 1 live, 2 print, 3 replay (SiW README, Liu et al. CVPR 2018); the medium id (print quality or
    replay device) goes to ``attack_detail`` as a number. Split: the ``Train``/``Test`` folder (SiW protocols
    split subjects 90 train / 75 test by these folders).
    """
    m = _SIW.match(_stem(path))
    if not m:
        return None
    split = split_from_parts(path.parts[:-1])
    detail = f"sensor_{m['sensor']}"
    if m["type"] == "1":
        return _live(m["subject"], split, detail)
    attack = "print" if m["type"] == "2" else "replay"
    return _fake(attack, f"{detail}/medium_{m['medium']}", m["subject"], split)


# --- Rose-Youtu --------------------------------------------------------------------------------------
_ROSE_CODES = {
    "g": ("live", "genuine"),
    "ps": ("print", "still printed paper"),
    "pq": ("print", "quivering printed paper"),
    "vl": ("replay", "video on Lenovo display"),
    "vm": ("replay", "video on Mac display"),
    "mc": ("print", "paper mask with eyes and mouth cropped"),
    "mf": ("print", "paper mask without cropping"),
    "mu": ("print", "paper mask with upper part cut"),
}


def parse_rose_youtu(path: PurePosixPath) -> Meta | None:
    """Rose-Youtu: ``<code>_<...>_<subject>_<k>.mp4`` with code G (genuine), Ps/Pq (still/quivering printed
    paper), Vl/Vm (video replay on Lenovo/Mac screens), Mc/Mf/Mu (paper masks).

    Codes from the ROSE-Youtu README (Li et al. TIFS 2018). Paper masks map to print (the schema's print
    family: paper cut-outs and paper masks). Subject = the last all-digit token but one of the name, else
    the enclosing numeric folder. Split: a ``train``/``test`` (or ``adaptation`` = train) folder when present;
    otherwise the reader's default (test: Rose-Youtu is a test set of the One-to-Eleven protocol).
    """
    tokens = _stem(path).split("_")
    code = tokens[0].lower()
    if code not in _ROSE_CODES or len(tokens) < 2:
        return None
    digits = [t for t in tokens[1:] if t.isdigit()]
    subject = digits[-2] if len(digits) >= 2 else next((p for p in reversed(path.parts[:-1]) if p.isdigit()), "")
    lowered = tuple(p.lower() for p in path.parts[:-1])
    split = "train" if "adaptation" in lowered else split_from_parts(path.parts[:-1])
    attack, detail = _ROSE_CODES[code]
    if attack == "live":
        return _live(subject, split, detail)
    return _fake(attack, f"{tokens[0]}: {detail}", subject, split)


# --- HKBU-MARs ---------------------------------------------------------------------------------------
_LIVE_DIRS = {"real", "live", "genuine", "bonafide", "bona_fide"}
_MASK_DIRS = {"mask", "masks", "attack", "attacks", "fake", "spoof"}


def parse_hkbu_mars(path: PurePosixPath) -> Meta | None:
    """HKBU-MARs V1+ (and V2): the label is the folder (``real``/``live``/``genuine`` -> live;
    ``mask``/``attack``/``fake``/``spoof`` -> 3D mask), e.g. ``real/03/07_06_03`` as in the CASIA-FAS list.

    Every attack of HKBU-MARs is a 3D mask (ThatsMyFace or REAL-f; Liu et al. ECCV 2016), named in
    ``attack_detail`` when the path says which. Subject = the numeric folder below the label folder, else
    the leading number of the file name. The exact V1+ release layout is not documented publicly to us: the
    folder rule is ours (docs/ingest.md). Split: the reader's default (test).
    """
    parts = path.parts
    lowered = [p.lower() for p in parts]
    label_at = next((i for i, p in enumerate(lowered[:-1]) if p in _LIVE_DIRS | _MASK_DIRS), None)
    if label_at is None:
        return None
    after = parts[label_at + 1 : -1]
    subject = next((p for p in after if p.isdigit()), "") or (re.match(r"^(\d+)", _stem(path)) or [""])[0]
    split = split_from_parts(parts[:-1])
    if lowered[label_at] in _LIVE_DIRS:
        return _live(subject, split)
    joined = "/".join(lowered)
    detail = ("ThatsMyFace" if "thatsmyface" in joined or "tmf" in lowered else
              "REAL-f" if "real-f" in joined or "realf" in joined else "3D mask")
    return _fake("mask", detail, subject, split)


# --- WMCA --------------------------------------------------------------------------------------------
_WMCA = re.compile(r"^(?P<client>\d{3})_(?P<session>\d{2})_(?P<presenter>\d{3})_(?P<type>\d)_(?P<pai>\d{2,3})$")
_WMCA_TYPES = {"1": ("other", "facial disguise"), "2": ("mask", "fake face"), "3": ("print", "photo"),
               "4": ("replay", "video")}


def parse_wmca(path: PurePosixPath) -> Meta | None:
    """WMCA: ``<client>_<session>_<presenter>_<type>_<pai>`` (e.g. ``face-station/17.01.18/002_01_003_2_81``).

    Type 0 bona fide; 1 facial disguise (glasses, wigs, make-up) -> other; 2 fake face (rigid, flexible and
    paper masks, mannequin heads) -> mask; 3 photo -> print; 4 video -> replay. Our reading of the
    ``type_id`` of the Idiap BATL/WMCA file names (George et al. TIFS 2019; bob.db.batl), checked against
    the grand-test CSV (type 0 is exactly the ``bonafide`` rows) but not against the per-PAI table: docs say
    so. Subject = client id. Split: the grand-test CSV group when given (train/dev/eval -> test), else the
    reader's default (test).
    """
    m = _WMCA.match(_stem(path))
    if not m:
        return None
    split = split_from_parts(path.parts[:-1])
    if m["type"] == "0":
        return _live(m["client"], split)
    if m["type"] not in _WMCA_TYPES:
        return None
    attack, detail = _WMCA_TYPES[m["type"]]
    return _fake(attack, f"{detail}/pai_{m['pai']}", m["client"], split)


# --- SiW-M-V2 ----------------------------------------------------------------------------------------
_SIWM_RULES = (  # first matching keyword of a folder name (lower case, "-"/" " as "_") wins
    ("live", "live"),
    ("makeup", "makeup"), ("cosmetic", "makeup"), ("impersonation", "makeup"), ("obfuscation", "makeup"),
    ("mannequin", "mannequin"), ("mask_mann", "mannequin"),
    ("partial", "other"), ("funny", "other"), ("paperglass", "other"), ("paper_glass", "other"),
    ("mask_paper", "print"), ("papermask", "print"), ("paper_mask", "print"),
    ("mask", "mask"), ("silicone", "mask"), ("transparent", "mask"), ("half", "mask"),
    ("replay", "replay"), ("print", "print"), ("paper", "print"),
)


def parse_siw_m(path: PurePosixPath) -> Meta | None:
    """SiW-M / SiW-Mv2: the attack type is the folder name (``Live``, ``Makeup_Co``, ``Mask_Half``,
    ``Mask_Mann``, ``Partial_Eye``, ``Paper``, ``Replay``...), matched by keyword in that order:
    live; make-up (cosmetic, impersonation, obfuscation) -> makeup; mannequin -> mannequin; partial attacks,
    funny eye, paper glasses -> other; paper masks -> print; other masks (half, silicone, transparent) ->
    mask; replay -> replay; print/paper -> print.

    Folder names after the SiW-M release (Liu et al. CVPR 2019) and SiW-Mv2 (Guo et al. ECCV 2022); the
    exact v2 layout is not documented publicly to us (docs/ingest.md). The matched folder goes to
    ``attack_detail``. Subject = the leading number of the file name when it has one. Split: test.
    """
    for part in path.parts[:-1]:
        key = re.sub(r"[\s\-]+", "_", part.lower())
        for word, attack in _SIWM_RULES:
            if word in key:
                subject = (re.match(r"^(\d+)", _stem(path)) or [""])[0]
                split = split_from_parts(path.parts[:-1])
                return _live(subject, split) if attack == "live" else _fake(attack, part, subject, split)
    return None


# --- CASIA-SURF 3DMask -------------------------------------------------------------------------------
def parse_3dmask(path: PurePosixPath) -> Meta | None:
    """CASIA-SURF 3DMask: ``Real/<subject>/<video>`` and ``Fake/<subject>/<group>/<video>`` (the layout of
    the CASIA-FAS lists ``3DMask_Real.txt`` / ``3DMask_Fake.txt``; subjects like ``0928_018``).

    Every fake is a 3D mask; the group folder goes to ``attack_detail``. Split: test (a test set of the
    One-to-Eleven protocol).
    """
    lowered = [p.lower() for p in path.parts]
    for i, part in enumerate(lowered[:-1]):
        if part in ("real", "live", "fake", "spoof", "attack", "mask"):
            rest = path.parts[i + 1 :]
            subject = rest[0] if len(rest) > 1 else ""
            split = split_from_parts(path.parts[:-1])
            if part in ("real", "live"):
                return _live(subject, split)
            group = rest[1] if len(rest) > 2 else ""
            return _fake("mask", f"3D mask/group_{group}" if group else "3D mask", subject, split)
    return None


# --- HiFiMask ----------------------------------------------------------------------------------------
_HIFI = re.compile(r"^(?P<skin>\d)_(?P<subject>\d{2})_(?P<type>[0-3])_(?P<scene>\d)_(?P<light>\d)_(?P<sensor>\d)$")
_HIFI_TYPES = {"1": "transparent mask", "2": "plaster mask", "3": "resin mask"}


def parse_hifimask(path: PurePosixPath) -> Meta | None:
    """CASIA-SURF HiFiMask: ``<skin>_<subject>_<type>_<scene>_<light>_<sensor>`` (e.g. ``3_48_1_1_1_5``).

    Type 0 live; 1 transparent, 2 plaster, 3 resin mask -> mask (HiFiMask paper, Liu et al. 2021; checked
    against the CASIA-FAS protocol-1 test list, where type 0 is exactly the live label: 4335 / 13027).
    Subject = the subject field. Split: a split folder's, else the reader's protocol-1 subject partition
    (`scf.ingest.readers.HiFiMask`), or a list's split.
    """
    m = _HIFI.match(_stem(path))
    if not m:
        return None
    split = split_from_parts(path.parts[:-1])
    detail = f"scene_{m['scene']}/light_{m['light']}/sensor_{m['sensor']}"
    if m["type"] == "0":
        return _live(m["subject"], split, detail)
    return _fake("mask", f"{_HIFI_TYPES[m['type']]}/{detail}", m["subject"], split)


# --- CelebA-Spoof ------------------------------------------------------------------------------------
CELEBA_SPOOF_TYPES = {
    0: ("live", "live"), 1: ("print", "photo"), 2: ("print", "poster"), 3: ("print", "A4"),
    4: ("print", "face mask"), 5: ("print", "upper body mask"), 6: ("print", "region mask"),
    7: ("replay", "PC"), 8: ("replay", "pad"), 9: ("replay", "phone"), 10: ("mask", "3D mask"),
}
"""CelebA-Spoof spoof-type index (label vector entry 40) -> (attack type, detail): 1-3 print,
4-6 paper masks (print family), 7-9 replay, 10 3D mask. The index and its names are the CelebA-Spoof
README's (ZhangYuanhan-AI/CelebA-Spoof; Zhang et al. ECCV 2020); the grouping into attack types is ours."""


def celeba_label_files(paths: tuple[Path, ...]) -> list[Path]:
    """The CelebA-Spoof label files named by ``--celeba-labels``: a ``*_label.json`` file, or a folder searched
    for ``train_label.json`` / ``test_label.json`` (e.g. the release's ``metas/intra_test``).

    Raises:
        IngestError: a path that does not exist, or a folder holding no such file.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            hits = sorted(p for name in ("train_label.json", "test_label.json") for p in path.rglob(name))
            if not hits:
                raise IngestError(f"--celeba-labels {path}: no train_label.json or test_label.json under it")
            found += hits
        else:
            raise IngestError(f"--celeba-labels {path}: no such file or folder")
    return found


def read_celeba_spoof_types(files: list[Path]) -> dict[str, int]:
    """``Data/<split>/<subject>/<live|spoof>/<id>.<ext>`` -> spoof-type index (label vector entry 40)."""
    types: dict[str, int] = {}
    for file in files:
        try:
            labels = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise IngestError(f"{file}: not a CelebA-Spoof label file ({e})") from e
        if not isinstance(labels, dict):
            raise IngestError(f"{file}: not a CelebA-Spoof label file (a JSON object of label vectors)")
        for key, vector in labels.items():
            if isinstance(vector, list) and len(vector) > 40:
                types[PurePosixPath(key).as_posix()] = int(vector[40])
    return types


def celeba_label_key(path: PurePosixPath) -> str:
    """The key of a CelebA-Spoof image in its label files: its path from the ``Data/`` folder on (else the
    whole path)."""
    parts = path.parts
    return "/".join(parts[parts.index("Data"):]) if "Data" in parts else path.as_posix()


def celeba_typed(meta: Meta, keys: list[str], types: dict[str, int]) -> Meta:
    """``meta`` of a CelebA-Spoof attack with the attack type of the first of ``keys`` that ``types`` knows
    (``keys`` with and without an extension are tried as ``.jpg`` and ``.png``); unchanged when none does."""
    if meta.label != LABEL_FAKE or not types:
        return meta
    for key in keys:
        stem = key.rsplit(".", 1)[0] if "." in PurePosixPath(key).name else key
        for candidate in (key, f"{stem}.jpg", f"{stem}.png"):
            code = types.get(candidate)
            if code is not None and code in CELEBA_SPOOF_TYPES and code != 0:
                attack, detail = CELEBA_SPOOF_TYPES[code]
                return Meta(LABEL_FAKE, attack, detail, meta.subject_id, meta.split)
    return meta


def parse_celeba_spoof(path: PurePosixPath) -> Meta | None:
    """CelebA-Spoof: ``Data/{train,test}/<subject>/{live,spoof}/<id>.jpg``.

    The folder gives the label; the spoof type of a ``spoof`` image comes from the label vector of
    ``metas/intra_test/{train,test}_label.json`` (entry 40, `CELEBA_SPOOF_TYPES`), which the reader applies.
    Without it the type is ``other`` with detail ``spoof type unknown``. Subject = the numeric folder.
    """
    parts = path.parts
    lowered = [p.lower() for p in parts[:-1]]
    if "live" in lowered:
        at, live = lowered.index("live"), True
    elif "spoof" in lowered:
        at, live = lowered.index("spoof"), False
    else:
        return None
    subject = parts[at - 1] if at >= 1 and parts[at - 1].isdigit() else ""
    split = split_from_parts(parts[:at])
    return _live(subject, split) if live else _fake("other", "spoof type unknown", subject, split)


PARSERS = {
    "msu-mfsd": parse_msu,
    "casia-fasd": parse_casia_fasd,
    "replay-attack": parse_replay_attack,
    "oulu-npu": parse_oulu_npu,
    "siw": parse_siw,
    "rose-youtu": parse_rose_youtu,
    "hkbu-mars": parse_hkbu_mars,
    "wmca": parse_wmca,
    "siw-m-v2": parse_siw_m,
    "casia-surf-3dmask": parse_3dmask,
    "hifimask": parse_hifimask,
    "celeba-spoof": parse_celeba_spoof,
}
"""Registry name -> naming rule."""

LIST_PREFIXES = {  # first path component of CASIA-FAS lists and FLIP's MCIO folders -> dataset
    "oulu_npu": "oulu-npu", "oulu": "oulu-npu", "replayattack": "replay-attack", "replay": "replay-attack",
    "casia_fasd": "casia-fasd", "casia": "casia-fasd", "msu_mfsd": "msu-mfsd", "msu": "msu-mfsd",
    "siw": "siw", "hkbu": "hkbu-mars", "3dmask": "casia-surf-3dmask", "idiap_wmca": "wmca", "wmca": "wmca",
    "casia_hifimask": "hifimask", "hifimask": "hifimask", "celeba_spoof": "celeba-spoof",
    "celeb": "celeba-spoof", "celeba": "celeba-spoof", "siw_m": "siw-m-v2", "siw-mv2": "siw-m-v2",
    "rose_youtu": "rose-youtu", "rose": "rose-youtu",
}


def dataset_of(path: PurePosixPath) -> str | None:
    """The dataset a list path belongs to, from its first component (``OULU_NPU/...``, ``oulu/...``)."""
    return LIST_PREFIXES.get(path.parts[0].lower()) if path.parts else None
