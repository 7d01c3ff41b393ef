"""Single-image and video judgment (``ifas-predict``): face crop, P(real), judgment and generated explanation.

For each input (an image, a video, or every image/video inside a folder, sorted) one JSON object::

    {"input": "...", "p_real": 0.93, "judgment": "real", "threshold": 0.5, "normalize": "vocab",
     "answer": "Yes", "explanation": "This is a man ...", "face_box": [x, y, w, h] | null, "faces": 1,
     "crop": {"detect": true, "margin": 0.2, "size": 224}}

and for a video also ``"best_frame": 21``, ``"frames_without_face": 0`` and ``"frames": [{"index", "sampled",
"p_real", "face_box", "faces", "answer", "explanation"}, ...]``.

* ``p_real``: the model's one-pass P("Yes") on the face crop; for a video, the mean over the judged frames.
* Video frames are picked as ``scf ingest`` picks them (so as ``ifas-eval`` scores the ingested video): the
  FLIP/SSDG frames ``6`` and ``6 + n // 2`` (`scf.video.flip_frame_indices`, or ``--frames K`` spread evenly)
  and, for a sampled frame without a face, the nearest of its neighbours with one (+1, -1, +2, ... up to 3
  each side, ingest's ``--neighbours``). ``index`` is the frame judged, ``sampled`` the frame it stands for.
  Only when no neighbour has a face is the sampled frame's whole image judged: that entry has
  ``"face_found": false`` and the video's ``frames_without_face`` counts it.
* ``judgment``: ``"real"`` iff ``p_real >= threshold``. With ``normalize="yes_no"`` the default 0.5 is the
  model's own Yes-over-No choice, so ``judgment`` agrees with ``answer``; with ``"vocab"`` (P(" Yes") over the
  whole vocabulary) it is not, and the two can disagree. A deployment should set the threshold from a dev
  set (``ifas-eval`` prints the dev-set EER threshold).
* ``normalize``: how ``p_real`` was read (``vocab`` or ``yes_no``).
* ``answer`` / ``explanation``: the generated judgment word and interpretation (paper eq. 3); the trained
  answer reads ``answer + ". " + explanation``. For a video they come from the frame whose score is most
  decisive in the direction of the video's judgment: ``best_frame`` is that frame's number in the video
  (the ``index`` of its entry in ``frames``), and ``face_box`` is its box.
* ``face_box``: the largest face (OpenCV Haar cascade, `scf.faces`, the detector ``scf ingest`` uses), in the
  pixels of the input image (for a video: of that frame); ``null`` when no face is found, in which case the
  whole image is used. ``faces``: how many faces the detector found there (the largest is judged).
* ``face_found``: ``false`` when any judged picture had no face (the whole image was judged); absent otherwise
  and with ``--no-detect``.
* ``crop``: the crop used: ``detect`` (False: ``--no-detect``, the whole image squared), ``margin`` (fraction
  of the box side added on every side; default ``scf ingest``'s, `scf.faces.DEFAULT_MARGIN`) and ``size``.
  It must match the crop of the model's training data (docs/evaluation.md, "ifas-predict").
* ``warnings``: present for an input unlike any training crop, e.g. smaller than `SMALL_IMAGE_SIDE` pixels.

An unreadable input yields ``{"input": ..., "error": "..."}``; the others are still processed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ifas_eval.metrics import check_threshold

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


def error_text(e: BaseException) -> str:
    """An exception as one line for the JSON ``error`` field: its message, without the class name."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(text.split()) or e.__class__.__name__


def _is_video(path: Path) -> bool:
    from scf.video import VIDEO_EXTENSIONS

    return path.suffix.lower() in VIDEO_EXTENSIONS


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Expand folders into their image and video files (recursive, sorted); files and missing paths pass."""
    from scf.video import VIDEO_EXTENSIONS

    out: list[str] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
            if not found:
                logger.warning("%s: folder without images or videos", path)
                out.append(raw)  # reported as an error line
            out.extend(str(p) for p in found)
        else:
            out.append(raw)
    return out


SMALL_IMAGE_SIDE = 64
"""An input whose shorter side is below this many pixels gets a ``warnings`` entry: the Haar cascade's
24-pixel window rarely finds a face in it (``scf ingest`` then skips the image: "no face detected"), and its
crop is upscaled more than 3.5 times to 224, so training data contains nothing like it."""


def default_margin() -> float:
    """``scf ingest``'s default ``--margin`` (`scf.faces.DEFAULT_MARGIN`), the crop the corpus was made with."""
    from scf.faces import DEFAULT_MARGIN

    return float(DEFAULT_MARGIN)


def default_neighbours() -> int:
    """``scf ingest``'s default ``--neighbours``: frames tried on each side of a sampled video frame without
    a face (`scf.ingest.worker.WorkSettings`)."""
    from scf.ingest.worker import WorkSettings

    return int(WorkSettings().neighbours)


def _check_margin(margin: float | None) -> float:
    margin = default_margin() if margin is None else margin
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ValueError(f"margin must be a number >= 0 (a fraction of the face box side), got {margin!r}")
    return float(margin)


def detect_faces_in(image: np.ndarray) -> list[list[int]]:
    """All face boxes ``[x, y, w, h]`` of an RGB array, largest first: the detector ``scf ingest`` uses
    (`scf.faces`, the shared default Haar cascade), so ``boxes[0]`` is the box ingest would crop."""
    from scf.faces import detect_faces

    return [list(b) for b in detect_faces(image)]


def face_crop(image: np.ndarray, detect: bool = True, margin: float | None = None) -> tuple[Any, list[int] | None]:
    """The 224x224 face crop of an RGB array and its box (None: no face, whole image used).

    Args:
        image: an RGB uint8 array.
        detect: detect the largest face; False = the image is a face crop already (the whole image, squared).
        margin: fraction of the box side added on every side; None = ``scf ingest``'s default (`default_margin`).
    """
    from scf.faces import DEFAULT_SIZE, crop_face

    boxes = detect_faces_in(image) if detect else []
    box = boxes[0] if boxes else None
    return crop_face(image, tuple(box) if box else None, _check_margin(margin), DEFAULT_SIZE), box


def _frame_entry(index: int, image: np.ndarray, boxes: list[list[int]], sampled: int | None = None
                 ) -> dict[str, Any]:
    entry: dict[str, Any] = {"index": int(index), "image": image, "boxes": boxes}
    if sampled is not None:
        entry["sampled"] = int(sampled)
    return entry


def _load_frames(path: Path, num_frames: int | None, detect: bool = True,
                 neighbours: int | None = None) -> list[dict[str, Any]]:
    """The frames to judge of one input, each ``{"index", "image", "boxes"}`` (+ ``"sampled"`` for a video).

    A video's frames are picked as ``scf ingest`` picks them: for each sampled frame (FLIP/SSDG's two, or
    ``num_frames`` spread evenly), the first of it, +1, -1, +2, ... up to ``neighbours`` each side (ingest's
    ``--neighbours``, default 3) in which a face is found, never one frame twice; when none has a face, the
    sampled frame itself (its whole image is then judged, and the record says so).
    """
    from PIL import Image, UnidentifiedImageError

    from scf.imaging import to_rgb
    from scf.video import (
        equidistant_frame_indices,
        flip_frame_indices,
        frame_count,
        neighbour_frame_indices,
        read_frame_map,
    )

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        raise ValueError(f"{path}: folder without images or videos")
    if _is_video(path):
        n = frame_count(path)
        targets = equidistant_frame_indices(n, num_frames) if num_frames else flip_frame_indices(n)
        radius = (default_neighbours() if neighbours is None else int(neighbours)) if detect else 0
        frames = read_frame_map(path, {i for t in targets for i in neighbour_frame_indices(t, n, radius)})
        picked: list[dict[str, Any]] = []
        used: set[int] = set()
        for t in targets:
            fallback = None
            for i in neighbour_frame_indices(t, n, radius):
                if i in used or i not in frames:
                    continue
                boxes = detect_faces_in(frames[i]) if detect else []
                if fallback is None or i == t:
                    fallback = _frame_entry(i, frames[i], boxes, t)
                if boxes or not detect:
                    picked.append(_frame_entry(i, frames[i], boxes, t))
                    used.add(i)
                    break
            else:
                if fallback is None:
                    raise ValueError(f"{path}: frame {t} and its neighbours do not decode (container says {n} "
                                     "frames)")
                picked.append(fallback)
                used.add(fallback["index"])
        return picked
    try:
        with Image.open(path) as im:
            rgb = to_rgb(im)
    except (UnidentifiedImageError, OSError):
        raise ValueError(f"{path}: not a readable image or video") from None
    return [_frame_entry(0, rgb, detect_faces_in(rgb) if detect else [])]


def _warnings(images: Sequence[np.ndarray]) -> list[str]:
    sides = [min(im.shape[:2]) for im in images]
    small = min(sides)
    if small < SMALL_IMAGE_SIDE:
        return [f"image smaller than {SMALL_IMAGE_SIDE} px (shorter side {small} px): too small for the face "
                "detector, and scf ingest would skip it; the judgment is of an input unlike the training data"]
    return []


def judge_frames(model: Any, processor: Any, frames: Sequence[np.ndarray], *, threshold: float = 0.5,
                 detect_faces: bool = True, max_new_tokens: int = 40, normalize: str = "vocab",
                 margin: float | None = None, boxes: Sequence[Sequence[Sequence[int]]] | None = None
                 ) -> tuple[dict[str, Any], list[dict[str, Any]], list[Any]]:
    """Judge the RGB frames of one input (one image, or the sampled frames of a video) together.

    Args:
        model: the I-FAS model.
        processor: its processor.
        frames: RGB uint8 arrays.
        threshold: ``judgment`` is "real" iff ``p_real >= threshold``.
        detect_faces: crop the largest face (else the whole image, squared).
        max_new_tokens: generation budget of the explanation.
        normalize: "vocab" or "yes_no" (see `judge`).
        margin: crop margin (fraction of the face box side); None = ``scf ingest``'s default.
        boxes: per frame, the face boxes already detected (largest first); None = detect here.

    Returns the JSON-ready record (without ``input``; its ``best_frame`` is a position in ``frames``, which
    `judge` turns into the video's frame number), the per-frame answers of `explain_images` (each with its
    ``crop``, the face crop that was scored), and the per-frame face boxes (each the largest, or None).
    """
    from ifas_model.inference import explain_images
    from scf.faces import DEFAULT_SIZE, crop_face

    threshold = check_threshold(threshold)  # before the generation, as in judge()
    margin = _check_margin(margin)
    if not frames:
        raise ValueError("no frames to judge")
    if boxes is None:
        boxes = [detect_faces_in(f) if detect_faces else [] for f in frames]
    all_boxes = [[list(b) for b in fb] for fb in boxes]
    largest = [fb[0] if fb else None for fb in all_boxes]
    crops = [crop_face(f, tuple(b) if b else None, margin, DEFAULT_SIZE) for f, b in zip(frames, largest, strict=True)]
    answers = explain_images(model, processor, list(crops), max_new_tokens, normalize=normalize)
    for answer, crop in zip(answers, crops, strict=True):
        answer["crop"] = crop
    p = np.array([float(a["p_real"]) for a in answers])
    p_real = float(p.mean())
    is_real = p_real >= threshold
    best = int(np.argmax(p) if is_real else np.argmin(p))
    record: dict[str, Any] = {
        "p_real": round(p_real, 6),
        "judgment": "real" if is_real else "fake",
        "threshold": threshold,
        "normalize": normalize,
        "answer": str(answers[best].get("judgment", "")),
        "explanation": str(answers[best].get("explanation", "")),
        "face_box": largest[best],
        "faces": len(all_boxes[best]),
        "crop": {"detect": bool(detect_faces), "margin": margin if detect_faces else 0.0, "size": DEFAULT_SIZE},
        "best_frame": best,
    }
    if detect_faces and any(b is None for b in largest):
        record["face_found"] = False
    warnings = _warnings(frames)
    if warnings:
        record["warnings"] = warnings
    return record, list(answers), largest

def _as_rgb(image: Any) -> np.ndarray:
    """A PIL image or an array (H x W, H x W x 3 or x 4) as an RGB uint8 array."""
    from PIL import Image

    from scf.imaging import to_rgb

    if isinstance(image, Image.Image):
        if 0 in image.size:
            raise ValueError(f"an empty image ({image.size[0]} x {image.size[1]} pixels): nothing to judge")
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.size == 0:
            raise ValueError(f"an empty image array (shape {image.shape}): nothing to judge")
        rgb = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image
        if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4):
            raise ValueError(f"an image array must be H x W, H x W x 3 or H x W x 4, got shape {image.shape}")
        if rgb.dtype != np.uint8:  # a float array in [0, 1] would silently become an almost black picture
            raise ValueError(f"an image array must be uint8 RGB (0-255), got {rgb.dtype}; for floats in [0, 1] "
                             "pass (array * 255).round().astype('uint8')")
        return np.ascontiguousarray(rgb[..., :3])
    raise TypeError(f"judge() takes a path, a PIL image or an RGB array, not {type(image).__name__}")


def judge(model: Any, processor: Any, source: str | Path | Any, *, threshold: float = 0.5,
          detect_faces: bool = True, max_new_tokens: int = 40, num_frames: int | None = None,
          normalize: str = "vocab", margin: float | None = None) -> dict[str, Any]:
    """Judge one photo or video as ``ifas-predict`` does: face crop, P(real), judgment and explanation.

    This is the one-call Python API for a raw photo. `ifas_model.inference.score_images` scores its images
    as they are, so it expects 224x224 face crops like the corpus (`scf ingest` writes them); on a whole photo
    its number differs from this one. Here the largest face is detected and cropped first, exactly as
    ``scf ingest`` crops by default (OpenCV Haar cascade, `scf.faces`, margin `default_margin`, 224 x 224;
    for a video the same frames, neighbours included), like ``ifas-predict``, ``ifas-eval``'s benchmark
    images and the demo, so ``judge(model, processor, "photo.jpg")`` returns the JSON line that
    ``ifas-predict photo.jpg`` prints with the same model, dtype and options. The crop must match the one the
    model was trained on: ``margin`` for an ingest run with another ``--margin``, ``detect_faces=False``
    for a model trained on pre-cropped faces (FLIP's MCIO crops, ``scf ingest --no-detect``).

    Args:
        model: the I-FAS model (`ifas_eval.scoring.load_checkpoint` loads it as ``ifas-predict`` does).
        processor: its processor.
        source: an image or video path, a PIL image (any mode: `scf.imaging.to_rgb`, as ingest), or an RGB
            array (H x W x 3, uint8).
        threshold: ``judgment`` is "real" iff ``p_real >= threshold`` (``ifas-predict --threshold``).
        detect_faces: crop the largest face; False = the input is a face crop already (the whole image is
            used, squared; ``--no-detect``).
        max_new_tokens: generation budget of the explanation.
        num_frames: frames per video spread evenly; None = the FLIP/SSDG two frames (6 and 6 + n // 2).
        normalize: how ``p_real`` is read: "vocab" (P(" Yes") over the vocabulary, the paper's score) or
            "yes_no" (P(" Yes") / (P(" Yes") + P(" No"))).
        margin: crop margin, fraction of the face box side added on every side (``--margin``); None =
            ``scf ingest``'s default (0.2).

    Returns:
        ``ifas-predict``'s record (module docstring): ``p_real``, ``judgment``, ``threshold``, ``normalize``,
        ``answer``, ``explanation``, ``face_box``, ``faces``, ``crop`` (``face_found`` False when a judged
        picture had no face, ``warnings`` for a tiny image); for a path also ``input``; for a video also
        ``best_frame``, ``frames_without_face`` and ``frames``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, not a readable image or video, an empty image, an array of another shape or
            dtype than uint8, a NaN ``threshold`` or a negative ``margin``.
        TypeError: ``source`` is none of the accepted types, or ``threshold`` is not a number.
    """
    return judge_with_crops(model, processor, source, threshold=threshold, detect_faces=detect_faces,
                            max_new_tokens=max_new_tokens, num_frames=num_frames, normalize=normalize,
                            margin=margin)[0]


def judge_with_crops(model: Any, processor: Any, source: str | Path | Any, *, threshold: float = 0.5,
                     detect_faces: bool = True, max_new_tokens: int = 40, num_frames: int | None = None,
                     normalize: str = "vocab", margin: float | None = None) -> tuple[dict[str, Any], list[Any]]:
    """`judge`, also returning the crops that were scored (PIL 224 x 224 images, one per judged frame)."""
    threshold = check_threshold(threshold)
    margin = _check_margin(margin)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            raise ValueError(f"{path}: a folder; judge() takes one image or video (for every file of a folder: "
                             "predict_inputs(model, processor, expand_inputs([folder])))")
        frames = _load_frames(path, num_frames, detect_faces)
    else:
        path = None
        rgb = _as_rgb(source)
        frames = [_frame_entry(0, rgb, detect_faces_in(rgb) if detect_faces else [])]
    record, answers, boxes = judge_frames(model, processor, [f["image"] for f in frames], threshold=threshold,
                                          detect_faces=detect_faces, max_new_tokens=max_new_tokens,
                                          normalize=normalize, margin=margin, boxes=[f["boxes"] for f in frames])
    if path is not None:
        record = {"input": str(source), **record}
    best = record.pop("best_frame")
    if path is not None and _is_video(path):
        record["best_frame"] = int(frames[best]["index"])  # the frame number in the video, as in "frames"
        record["frames_without_face"] = sum(b is None for b in boxes) if detect_faces else 0
        record["frames"] = []
        for f, a, b in zip(frames, answers, boxes, strict=True):
            entry = {"index": f["index"], "sampled": f["sampled"], "p_real": round(float(a["p_real"]), 6),
                     "face_box": b, "faces": len(f["boxes"]), "answer": str(a.get("judgment", "")),
                     "explanation": str(a.get("explanation", ""))}
            if detect_faces and b is None:
                entry["face_found"] = False
            record["frames"].append(entry)
    return record, [a["crop"] for a in answers]


def predict_inputs(model: Any, processor: Any, inputs: Sequence[str], *, threshold: float = 0.5,
                   detect_faces: bool = True, max_new_tokens: int = 40,
                   num_frames: int | None = None, normalize: str = "vocab",
                   margin: float | None = None) -> Iterable[dict[str, Any]]:
    """Judge each input with `judge`; yields one JSON-ready dict per input (module docstring), errors included.

    Args:
        model: the I-FAS model.
        processor: its processor.
        inputs: image or video paths (folders already expanded, see `expand_inputs`).
        threshold: ``judgment`` is "real" iff ``p_real >= threshold``.
        detect_faces: crop the largest face (else the whole image, squared).
        max_new_tokens: generation budget of the explanation.
        num_frames: frames per video spread evenly; None = the FLIP/SSDG two frames.
        normalize: how ``p_real`` is read: "vocab" (P(" Yes") over the vocabulary, the paper's score) or
            "yes_no" (P(" Yes") / (P(" Yes") + P(" No"))).
        margin: crop margin (fraction of the face box side); None = ``scf ingest``'s default.
    """
    margin = _check_margin(margin)
    for raw in inputs:
        try:
            yield judge(model, processor, raw, threshold=threshold, detect_faces=detect_faces,
                        max_new_tokens=max_new_tokens, num_frames=num_frames, normalize=normalize, margin=margin)
        except Exception as e:  # noqa: BLE001 - one bad input must not stop the others; reported as a line
            logger.debug("failed on %s", raw, exc_info=True)
            yield {"input": raw, "error": error_text(e)}
