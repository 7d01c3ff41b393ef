"""The embedded FAS sample: SYNTHETIC attacks of real public-domain face photos, generated at run time.

The toolkit's default data when no licensed dataset is at hand (tests, the offline demo, the quick start).
Nothing of it is stored in git: it is rebuilt, identically for a seed, from face photos that ship inside
registry packages (scikit-image's ``skimage.data``, matplotlib's sample data):

* ``astronaut``: `skimage.data.astronaut()`, Eileen Collins, NASA, public domain;
* ``grace-hopper``: matplotlib's ``grace_hopper.jpg``, US Navy, public domain;
* ``lfw-000`` .. ``lfw-009``: the first ten face crops of `skimage.data.lfw_subset()` (25x25 grayscale
  crops of Labeled Faces in the Wild, as shipped by scikit-image), upsampled and tinted with a skin tone.

For each of the four capture domains of `scf.spoof.CAPTURE_DOMAINS` and each subject there are three
"videos" of ``frames_per_video`` frames: a live one (pose jitter and lighting between frames), a print attack
and a replay attack (`scf.spoof.render_print`, `render_replay`; the attack medium moves between frames).
Sources are the domain names (``sample-domain-a`` .. ``-d``), so that the leave-one-domain-out protocol of
``ifas-eval`` runs on it. Subjects are split train/test, the same way in every domain.

Every row's ``attack_detail`` says ``synthetic`` and the source names start with ``sample-``: this sample
must never be mistaken for, or reported as, a real FAS benchmark.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scf import schema, spoof

if TYPE_CHECKING:  # pragma: no cover
    import datasets

logger = logging.getLogger(__name__)

SAMPLE_SOURCES = tuple(d.name for d in spoof.CAPTURE_DOMAINS)
IMAGE_SIZE = 224
_BASE_SIZE = 256  # faces are prepared a little larger than the output so that jitter never shows borders

# Face boxes (x, y, w, h) found once with OpenCV's frontal-face Haar cascade and fixed here, so the sample
# does not change with the detector's version; the crop takes a margin around them.
_PHOTO_FACES = {
    "astronaut": ((177, 66, 95, 95), 0.5),
    "grace-hopper": ((155, 105, 222, 222), 0.3),
}
_LFW_SUBJECTS = 10
_TRAIN_SUBJECTS = ("astronaut", "lfw-000", "lfw-001", "lfw-002", "lfw-003", "lfw-004", "lfw-005")
_SKIN_TONES = np.array(
    [[1.0, 0.80, 0.68], [0.92, 0.72, 0.58], [0.80, 0.60, 0.45], [0.62, 0.45, 0.33], [1.0, 0.86, 0.76]],
    dtype=np.float32,
)
_ATTACKS = ("live", "print", "replay")


def _crop_square(image: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray:
    import cv2

    x, y, w, h = box
    side = int(max(w, h) * (1 + 2 * margin))
    cx, cy = x + w // 2, y + h // 2
    pad = side
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT101)
    x0, y0 = cx - side // 2 + pad, cy - side // 2 + pad
    crop = padded[y0 : y0 + side, x0 : x0 + side]
    return cv2.resize(crop, (_BASE_SIZE, _BASE_SIZE), interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=1)
def live_faces() -> tuple[tuple[str, np.ndarray], ...]:
    """The live faces of the sample: (subject id, float32 RGB (256, 256, 3) in [0, 1]), fixed order."""
    import cv2
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    faces: list[tuple[str, np.ndarray]] = []
    photos = {
        "astronaut": skimage.data.astronaut(),
        "grace-hopper": np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")),
    }
    for name, (box, margin) in _PHOTO_FACES.items():
        faces.append((name, _crop_square(photos[name], box, margin).astype(np.float32) / 255.0))
    lfw = skimage.data.lfw_subset()[:_LFW_SUBJECTS]  # the first 100 of the 200 crops are faces
    for i, gray in enumerate(lfw):
        up = cv2.resize(gray.astype(np.float32), (_BASE_SIZE, _BASE_SIZE), interpolation=cv2.INTER_CUBIC)
        tone = _SKIN_TONES[i % len(_SKIN_TONES)]
        faces.append((f"lfw-{i:03d}", np.clip(up[..., None] * tone, 0, 1).astype(np.float32)))
    return tuple(faces)


def _frame(face: np.ndarray, attack: str, domain: spoof.CaptureDomain, medium: np.ndarray | None,
           rng: np.random.Generator) -> bytes:
    import cv2

    if attack == "live":
        scene = spoof.relight(spoof.pose_jitter(face, rng), rng, gain=(0.9, 1.1), gradient=0.3)
    else:  # the printed sheet or the screen moves as a whole between frames (a hand holds it)
        assert medium is not None
        scene = spoof.pose_jitter(medium, rng, max_angle=4.0, max_shift=0.03, scale=(0.96, 1.04))
    scene = cv2.resize(scene, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    return domain.capture(scene, rng)


def sample_rows(seed: int = 0, *, frames_per_video: int = 2) -> list[dict]:
    """All rows of the sample in the benchmark schema (``image`` as ``{"bytes": JPEG, "path": None}``)."""
    rows = []
    for d_index, domain in enumerate(spoof.CAPTURE_DOMAINS):
        for s_index, (subject, face) in enumerate(live_faces()):
            split = "train" if subject in _TRAIN_SUBJECTS else "test"
            for a_index, attack in enumerate(_ATTACKS):
                rng = np.random.default_rng([seed, d_index, s_index, a_index])
                medium, detail = None, "synthetic"
                if attack == "print":
                    medium, kind = spoof.render_print(spoof.pose_jitter(face, rng), rng)
                    detail = f"synthetic {kind}"
                elif attack == "replay":
                    medium, kind = spoof.render_replay(spoof.pose_jitter(face, rng), rng)
                    detail = f"synthetic {kind}"
                video_id = f"{domain.name}/{subject}/{attack}"
                for k in range(frames_per_video):
                    rows.append({
                        "image": {"bytes": _frame(face, attack, domain, medium, rng), "path": None},
                        "label": schema.LABEL_REAL if attack == "live" else schema.LABEL_FAKE,
                        "attack_type": attack,
                        "attack_detail": detail,
                        "source": domain.name,
                        "subject_id": subject,
                        "video_id": video_id,
                        "frame_index": k,
                        "split": split,
                        "path": f"{video_id}/frame{k}.jpg",
                    })
    return rows


@functools.lru_cache(maxsize=4)
def build_sample(seed: int = 0, *, frames_per_video: int = 2) -> datasets.DatasetDict:
    """The embedded sample as a `datasets.DatasetDict` (splits ``train`` and ``test``) in the benchmark schema.

    Deterministic for a seed; cached per process (treat the result as read-only).
    """
    import datasets

    features = schema.benchmark_features()
    rows = sample_rows(seed, frames_per_video=frames_per_video)
    splits = {}
    for split in ("train", "test"):
        splits[split] = datasets.Dataset.from_list([r for r in rows if r["split"] == split], features=features)
    logger.info("built the synthetic sample: %s", {k: len(v) for k, v in splits.items()})
    return datasets.DatasetDict(splits)


def sample_card(ds: datasets.DatasetDict, seed: int) -> str:
    """The dataset card (README.md) of a written sample."""
    lines = [
        "---",
        "pretty_name: I-FAS embedded synthetic sample",
        "tags: [face-anti-spoofing, synthetic]",
        "configs:",
        "- config_name: default",
        "  data_files:",
    ]
    lines += [f"  - split: {split}\n    path: data/{split}-*.parquet" for split in ds]
    lines += ["---", "", "# I-FAS embedded sample (SYNTHETIC)", ""]
    lines += [
        "**Every attack in this dataset is synthetic**: public-domain face photos rendered as print and replay",
        "attacks by `scf.spoof` and re-captured by four synthetic cameras (`sample-domain-a` .. `-d`). It exists",
        "to run the toolkit offline. It is not a FAS benchmark; never report numbers on it as such.",
        "",
        f"Generated by `scf sample --seed {seed}` (deterministic for the seed).",
        "",
        "| split | rows | real | fake | by attack type |",
        "|---|---|---|---|---|",
    ]
    for split, d in ds.items():
        labels, attacks = d["label"], d["attack_type"]
        counts = schema.attack_type_counts(labels, attacks)
        real = sum(1 for v in labels if v == schema.LABEL_REAL)
        lines.append(f"| {split} | {len(d)} | {real} | {len(d) - real} | "
                     + ", ".join(f"{k} {v}" for k, v in counts.items()) + " |")
    lines += ["", "Domains:", ""]
    lines += [f"- `{d.name}`: {d.description}" for d in spoof.CAPTURE_DOMAINS]
    lines += [
        "",
        "Face photos: `skimage.data.astronaut()` (NASA, public domain), matplotlib's `grace_hopper.jpg`",
        "(US Navy, public domain), and ten crops of `skimage.data.lfw_subset()` (Labeled Faces in the Wild).",
        "",
    ]
    return "\n".join(lines)


def write_sample(out: str | Path, seed: int = 0, *, frames_per_video: int = 2) -> Path:
    """Write the sample as a dataset folder (parquet shards + card) loadable with `datasets.load_dataset`."""
    from scf.shards import ShardWriter

    out = Path(out)
    ds = build_sample(seed, frames_per_video=frames_per_video)
    with ShardWriter(out, schema.benchmark_features(), shard_size=10_000) as writer:
        done = writer.done_keys  # a rerun into the same folder adds nothing twice
        for split, d in ds.items():
            for row in d.cast_column("image", _raw_image_feature()):
                if row["path"] not in done:
                    writer.add(row, split)
    (out / "README.md").write_text(sample_card(ds, seed), encoding="utf-8")
    return out


def _raw_image_feature():  # noqa: ANN202
    import datasets

    return datasets.Image(decode=False)


def write_sample_files(out: str | Path, seed: int = 0, *, frames_per_video: int = 2) -> list[Path]:
    """Write the sample as a user would hold a dataset: JPEG files and a CSV manifest per capture domain.

    Layout: ``OUT/<domain>/<split>/<attack_type>/<subject>_frame<k>.jpg`` and ``OUT/<domain>/manifest.csv``
    (columns of the ``scf ingest --source csv`` reader: ``path,label,attack_type,attack_detail,subject_id,
    video_id,split,frame_index``; ``frame_index`` keeps the frames of a video in order, as in the embedded sample). Returns the domain folders. Used by the quick start to exercise ``scf ingest``.
    """
    import csv

    out = Path(out)
    folders: dict[str, Path] = {}
    manifests: dict[str, list[dict]] = {}
    for row in sample_rows(seed, frames_per_video=frames_per_video):
        folder = folders.setdefault(row["source"], out / row["source"])
        rel = Path(row["split"]) / row["attack_type"] / f"{row['subject_id']}_frame{row['frame_index']}.jpg"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(row["image"]["bytes"])
        manifests.setdefault(row["source"], []).append({
            "path": rel.as_posix(), "label": row["label"], "attack_type": row["attack_type"],
            "attack_detail": row["attack_detail"], "subject_id": row["subject_id"], "video_id": row["video_id"],
            "split": row["split"], "frame_index": row["frame_index"],
        })
    for source, rows in manifests.items():
        with (folders[source] / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return list(folders.values())
