"""The web demo for one image (``ifas-demo``): a Gradio page showing the face, P(real), judgment and explanation.

Upload a photo or take one with the webcam; the page shows the detected face crop (OpenCV Haar cascade,
`scf.faces`), the model's one-pass P(real), the judgment at the threshold in use, and the generated
interpretation (paper eq. 3). The threshold is a slider initialised from ``--threshold``; the judgment line
always says which threshold produced it. The same code path as ``ifas-predict`` (`ifas_eval.predict.judge`):
the same decoding (`scf.imaging.to_rgb`), crop and score, so the page and ``ifas-predict`` agree on a file.

Uploaded photos and the face crops shown are files Gradio writes to its temporary folder. ``ifas-demo`` runs
in a private one (`private_temp_dir`: mode 0700, inside the user's ``GRADIO_TEMP_DIR`` if set, removed when
the demo stops, also on SIGTERM and SIGHUP), Gradio deletes files older
than 10 minutes while it runs (`DELETE_CACHE`), uploads are limited to `MAX_FILE_SIZE`, and errors reach the
browser as messages of our own, without server paths or tracebacks (`launch`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TITLE = "I-FAS: interpretable face anti-spoofing"
MAX_FILE_SIZE = "20mb"
"""Largest upload the page accepts (Gradio's ``max_file_size``); a face photo is well under 20 MB."""
DELETE_CACHE = (600, 600)
"""Gradio's ``delete_cache`` (every 600 s, the files older than 600 s): uploads and crops live 10-20 minutes."""
ERROR_MESSAGE = "This image could not be judged (details are in the server's log)."
"""What the page says when judging fails; the exception itself, with its server paths, stays in the log."""


@contextlib.contextmanager
def private_temp_dir(parent: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """A private folder (``tempfile.mkdtemp``: mode 0700) as ``GRADIO_TEMP_DIR`` while the block runs.

    Gradio keeps every upload and every image it shows in ``GRADIO_TEMP_DIR`` (by default the shared
    ``/tmp/gradio``, readable by all local users, never emptied). Build the app inside this block; on exit
    the folder and everything in it is removed and the variable restored.

    A ``GRADIO_TEMP_DIR`` the user set (say, because ``/tmp`` is a small tmpfs) is respected as the place
    for the private folder (`temp_parent`): the folder is created inside it, and only that folder is
    removed on exit; the user's folder and whatever else is in it are left alone.

    Args:
        parent: where to create the folder (default: `temp_parent`, i.e. ``$GRADIO_TEMP_DIR`` if set, else
            the system temp folder, ``$TMPDIR`` or ``/tmp``). Created if missing (as Gradio would).

    Yields:
        The folder.

    Raises:
        OSError: the folder cannot be created in ``parent`` (not a folder, not writable); the message names it.
    """
    if parent is None:
        parent = temp_parent()
    where = Path(parent) if parent is not None else None
    try:
        if where is not None:
            where.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="ifas-demo-", dir=where))
    except OSError as e:
        shown = where if where is not None else tempfile.gettempdir()
        raise OSError(f"cannot create the demo's temporary folder in {shown}: {e.strerror or e}") from None
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    _point_gradio_at(str(folder))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous
        _point_gradio_at(previous or str(Path(tempfile.gettempdir()) / "gradio"))


def temp_parent() -> Path | None:
    """Where `private_temp_dir` puts its folder: ``$GRADIO_TEMP_DIR`` (made absolute) when the user set it
    (not empty), else None (the system temp folder)."""
    value = os.environ.get("GRADIO_TEMP_DIR", "")
    return Path(value).expanduser().absolute() if value.strip() else None


_GRADIO_MODULES_WITH_TEMP_DIR = ("gradio.route_utils", "gradio.routes", "gradio.mcp", "gradio.screen_recording_utils")


def _point_gradio_at(folder: str) -> None:
    """Gradio's modules copy ``GRADIO_TEMP_DIR`` into ``DEFAULT_TEMP_DIR`` when first imported, and each app
    launched creates a folder there; in a process that imported gradio earlier (or serves twice) they would
    still name an older folder (recreating a removed private one, 0755). Keep them in step with the variable."""
    import sys

    for name in _GRADIO_MODULES_WITH_TEMP_DIR:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "DEFAULT_TEMP_DIR"):
            module.DEFAULT_TEMP_DIR = folder


def launch(app: Any, *, host: str = "127.0.0.1", port: int | None = 7860, **kwargs: Any) -> Any:
    """``app.launch`` as ``ifas-demo`` serves it: no share link, `MAX_FILE_SIZE`, no exception text to the browser.

    Args:
        app: the `build_demo` app.
        host: address to serve on (``127.0.0.1``: this machine only).
        port: port; None lets Gradio take the first free one from 7860 on.
        **kwargs: further ``launch`` options (e.g. ``prevent_thread_lock=True`` to return at once).
    """
    return app.launch(server_name=host, server_port=port, share=False, show_error=False,
                      max_file_size=MAX_FILE_SIZE, **kwargs)


def answer_text(answer: str, explanation: str) -> str:
    """The generated answer as training writes it: ``"Yes. This is ..."`` (judgment, ". ", interpretation)."""
    if answer and explanation:
        return f"{answer}. {explanation}"
    return answer or explanation


def judge_image(model: Any, processor: Any, image: Any, threshold: float, *,
                detect_faces: bool = True, normalize: str = "vocab", max_new_tokens: int = 40,
                margin: float | None = None) -> tuple[Any, float | None, str, str]:
    """Judge one uploaded image for the page: (face crop, p_real, judgment line, explanation).

    ``image`` is what the page's image component gives: a PIL image in its own mode (``image_mode=None``),
    decoded by `ifas_eval.predict.judge` through `scf.imaging.to_rgb` exactly as ``ifas-predict`` and
    ``scf ingest`` decode a file (16-bit greys scaled, transparency composited over white, palette and CMYK
    converted, EXIF orientation applied), so the page's number equals ``ifas-predict``'s for the same file.
    An RGB uint8 array is accepted too.
    """
    from ifas_eval.predict import judge_with_crops

    if image is None:
        return None, None, "No image: upload a photo or take one with the webcam.", ""
    record, crops = judge_with_crops(model, processor, image, threshold=threshold, detect_faces=detect_faces,
                                     max_new_tokens=max_new_tokens, normalize=normalize, margin=margin)
    verdict = "REAL (live person)" if record["judgment"] == "real" else "FAKE (presentation attack)"
    if not detect_faces:
        face = "no face detection: the whole image was judged"
    elif record["face_box"] is None:
        face = "no face found: the whole image was judged"
    else:
        face = "face detected" + (f", the largest of {record['faces']}" if record["faces"] > 1 else "")
    line = f"{verdict}: p_real {record['p_real']:.4f} {'>=' if record['judgment'] == 'real' else '<'} " \
           f"threshold {threshold:.4f} ({face})"
    for warning in record.get("warnings", []):
        line += f". Warning: {warning}"
    explanation = answer_text(record["answer"], record["explanation"])
    return crops[0], record["p_real"], line, explanation


def build_demo(model: Any, processor: Any, *, threshold: float = 0.5, model_note: str = "",
               normalize: str = "vocab", detect_faces: bool = True, margin: float | None = None) -> Any:
    """The Gradio `Blocks` app for ``model``; serve it with `launch`, inside `private_temp_dir`.

    The photo component hands uploads over as PIL images in their own mode (``type="pil"``,
    ``image_mode=None``): Gradio's own RGB conversion would clip 16-bit greys, drop transparency and give a
    GIF's palette indices, so decoding is left to `judge_image` (`scf.imaging.to_rgb`, as ``ifas-predict``).
    ``detect_faces`` and ``margin`` are ``ifas-predict``'s ``--no-detect`` and ``--margin``.

    Build it inside `private_temp_dir` (Gradio reads ``GRADIO_TEMP_DIR`` when the app is built); its
    temporary files older than 10 minutes are deleted every 10 minutes (`DELETE_CACHE`).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from the demo
    import gradio as gr

    def run(image: Any, thr: float) -> tuple[Any, float | None, str, str]:
        try:
            return judge_image(model, processor, image, float(thr), detect_faces=detect_faces,
                               normalize=normalize, margin=margin)
        except Exception:  # noqa: BLE001 - logged in full here; the browser gets our line, not server paths
            logger.exception("judging an uploaded image failed")
            raise gr.Error(ERROR_MESSAGE) from None

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(f"# {TITLE}\nAsked *\"Is this photo of a real person?\"*, the model answers with a judgment "
                    "and an interpretation." + (f"\n\n**{model_note}**" if model_note else ""))
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="Photo", type="pil", image_mode=None, sources=["upload", "webcam"],
                                 elem_id="photo")
                thr = gr.Slider(0.0, 1.1, value=threshold, step=0.0001, label="Threshold (real iff p_real >= it)",
                                elem_id="threshold")
                button = gr.Button("Judge", variant="primary", elem_id="judge")
            with gr.Column():
                face = gr.Image(label="Face crop (224x224, what the model sees)", elem_id="face")
                p_real = gr.Number(label="p_real = P(\"Yes\") at the answer position", elem_id="p_real")
                judgment = gr.Textbox(label="Judgment", elem_id="judgment")
                explanation = gr.Textbox(label="Explanation (generated)", lines=3, elem_id="explanation")
        button.click(run, inputs=[image, thr], outputs=[face, p_real, judgment, explanation])
    return demo
