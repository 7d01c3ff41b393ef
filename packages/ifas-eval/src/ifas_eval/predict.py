"""Single-image and video judgment (``ifas-predict``): face crop, P(real), judgment and generated explanation.

For each input (an image, a video, or every image/video inside a folder, sorted) one JSON object::

    {"input": "...", "p_real": 0.93, "judgment": "real", "threshold": 0.5, "normalize": "vocab",
     "answer": "Yes", "explanation": "This is a man ...", "face_box": [x, y, w, h] | null}

and for a video also ``"best_frame": 21`` and ``"frames": [{"index", "p_real", "face_box", "answer",
"explanation"}, ...]``.

* ``p_real``: the model's one-pass P("Yes") on the face crop; for a video, the mean over the sampled frames
  (the FLIP/SSDG video rule: frames ``6`` and ``6 + n // 2``, `scf.video.flip_frame_indices`).
* ``judgment``: ``"real"`` iff ``p_real >= threshold``. With ``normalize="yes_no"`` the default 0.5 is the
  model's own Yes-over-No choice, so ``judgment`` agrees with ``answer``; with ``"vocab"`` (P(" Yes") over the
  whole vocabulary) it is not, and the two can disagree. A deployment should set the threshold from a dev
  set (``ifas-eval`` prints the dev-set EER threshold).
* ``normalize``: how ``p_real`` was read (``vocab`` or ``yes_no``).
* ``answer`` / ``explanation``: the generated judgment word and interpretation (paper eq. 3); the trained
  answer reads ``answer + ". " + explanation``. For a video they come from the frame whose score is most
  decisive in the direction of the video's judgment: ``best_frame`` is that frame's number in the video
  (the ``index`` of its entry in ``frames``), and ``face_box`` is its box.
* ``face_box``: the largest face (OpenCV Haar cascade, `scf.faces`), in the pixels of the input image (for a
  video: of that frame); ``null`` when no face is found, in which case the whole image is used and
  ``"face_found": false`` is set.

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


def face_crop(image: np.ndarray, detect: bool = True) -> tuple[Any, list[int] | None]:
    """The 224x224 face crop of an RGB array and its box (None: no face, whole image used)."""
    from scf.faces import crop_face, detect_largest_face

    box = detect_largest_face(image) if detect else None
    return crop_face(image, box), (list(box) if box is not None else None)


def _load_frames(path: Path, num_frames: int | None) -> list[tuple[int, np.ndarray]]:
    from PIL import Image, UnidentifiedImageError

    from scf.imaging import to_rgb
    from scf.video import equidistant_frame_indices, flip_frame_indices, frame_count, read_frames

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        raise ValueError(f"{path}: folder without images or videos")
    if _is_video(path):
        n = frame_count(path)
        idx = equidistant_frame_indices(n, num_frames) if num_frames else flip_frame_indices(n)
        return list(zip(idx, read_frames(path, idx), strict=True))
    try:
        with Image.open(path) as im:
            return [(0, to_rgb(im))]
    except (UnidentifiedImageError, OSError):
        raise ValueError(f"{path}: not a readable image or video") from None


def judge_frames(model: Any, processor: Any, frames: Sequence[np.ndarray], *, threshold: float = 0.5,
                 detect_faces: bool = True, max_new_tokens: int = 40,
                 normalize: str = "vocab") -> tuple[dict[str, Any], list[dict[str, Any]], list[Any]]:
    """Judge the RGB frames of one input (one image, or the sampled frames of a video) together.

    Returns the JSON-ready record (without ``input``; its ``best_frame`` is a position in ``frames``, which
    `judge` turns into the video's frame number), the per-frame answers of `explain_images` (each with its
    ``crop``, the face crop that was scored), and the per-frame face boxes.
    """
    from ifas_model.inference import explain_images

    threshold = check_threshold(threshold)  # before the generation, as in judge()
    if not frames:
        raise ValueError("no frames to judge")
    crops, boxes = zip(*(face_crop(f, detect_faces) for f in frames), strict=True)
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
        "face_box": boxes[best],
        "best_frame": best,
    }
    if boxes[best] is None and detect_faces:
        record["face_found"] = False
    return record, list(answers), list(boxes)


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
          normalize: str = "vocab") -> dict[str, Any]:
    """Judge one photo or video as ``ifas-predict`` does: face crop, P(real), judgment and explanation.

    This is the one-call Python API for a raw photo. `ifas_model.inference.score_images` scores its images
    as they are, so it expects 224x224 face crops like the corpus (`scf ingest` writes them); on a whole photo
    its number differs from this one. Here the largest face is detected and cropped first (OpenCV Haar
    cascade, `scf.faces`, with `scf ingest`'s margin), exactly like ``ifas-predict``, ``ifas-eval``'s
    benchmark images and the demo, so ``judge(model, processor, "photo.jpg")`` returns the JSON line that
    ``ifas-predict photo.jpg`` prints with the same model, dtype and options.

    Args:
        model: the I-FAS model (`ifas_eval.scoring.load_checkpoint` loads it as ``ifas-predict`` does).
        processor: its processor.
        source: an image or video path, a PIL image, or an RGB array (H x W x 3, uint8).
        threshold: ``judgment`` is "real" iff ``p_real >= threshold`` (``ifas-predict --threshold``).
        detect_faces: crop the largest face; False = the input is a face crop already (the whole image is
            used, squared; ``--no-face-detection``).
        max_new_tokens: generation budget of the explanation.
        num_frames: frames per video spread evenly; None = the FLIP/SSDG two frames (6 and 6 + n // 2).
        normalize: how ``p_real`` is read: "vocab" (P(" Yes") over the vocabulary, the paper's score) or
            "yes_no" (P(" Yes") / (P(" Yes") + P(" No"))).

    Returns:
        ``ifas-predict``'s record (module docstring): ``p_real``, ``judgment``, ``threshold``, ``normalize``,
        ``answer``, ``explanation``, ``face_box`` (``face_found`` False when no face was found); for a path
        also ``input``; for a video also ``best_frame`` (the video frame number whose answer is shown, the
        ``index`` of an entry of ``frames``) and ``frames``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, not a readable image or video, an empty image, an array of another shape or
            dtype than uint8, or a NaN ``threshold``.
        TypeError: ``source`` is none of the accepted types, or ``threshold`` is not a number.
    """
    threshold = check_threshold(threshold)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            raise ValueError(f"{path}: a folder; judge() takes one image or video (for every file of a folder: "
                             "predict_inputs(model, processor, expand_inputs([folder])))")
        frames = _load_frames(path, num_frames)
    else:
        path = None
        frames = [(0, _as_rgb(source))]
    record, answers, boxes = judge_frames(model, processor, [f for _, f in frames], threshold=threshold,
                                          detect_faces=detect_faces, max_new_tokens=max_new_tokens,
                                          normalize=normalize)
    if path is not None:
        record = {"input": str(source), **record}
    best = record.pop("best_frame")
    if path is not None and _is_video(path):
        record["best_frame"] = int(frames[best][0])  # the frame number in the video, as in "frames"
        record["frames"] = [
            {"index": int(i), "p_real": round(float(a["p_real"]), 6), "face_box": b,
             "answer": str(a.get("judgment", "")), "explanation": str(a.get("explanation", ""))}
            for (i, _), a, b in zip(frames, answers, boxes, strict=True)
        ]
    return record


def predict_inputs(model: Any, processor: Any, inputs: Sequence[str], *, threshold: float = 0.5,
                   detect_faces: bool = True, max_new_tokens: int = 40,
                   num_frames: int | None = None, normalize: str = "vocab") -> Iterable[dict[str, Any]]:
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
    """
    for raw in inputs:
        try:
            yield judge(model, processor, raw, threshold=threshold, detect_faces=detect_faces,
                        max_new_tokens=max_new_tokens, num_frames=num_frames, normalize=normalize)
        except Exception as e:  # noqa: BLE001 - one bad input must not stop the others; reported as a line
            logger.debug("failed on %s", raw, exc_info=True)
            yield {"input": raw, "error": error_text(e)}
