"""The web demo for one image (``ifas-demo``): a Gradio page showing the face, P(real), judgment and explanation.

Upload a photo or take one with the webcam; the page shows the detected face crop (OpenCV Haar cascade,
`scf.faces`), the model's one-pass P(real), the judgment at the threshold in use, and the generated
interpretation (paper eq. 3). The threshold is a slider initialised from ``--threshold``; the judgment line
always says which threshold produced it. The same code path as ``ifas-predict`` (`ifas_eval.predict.judge_frames`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

TITLE = "I-FAS: interpretable face anti-spoofing"


def answer_text(answer: str, explanation: str) -> str:
    """The generated answer as training writes it: ``"Yes. This is ..."`` (judgment, ". ", interpretation)."""
    if answer and explanation:
        return f"{answer}. {explanation}"
    return answer or explanation


def judge_image(model: Any, processor: Any, image: np.ndarray | None, threshold: float, *,
                detect_faces: bool = True, normalize: str = "vocab",
                max_new_tokens: int = 40) -> tuple[Any, float | None, str, str]:
    """Judge one RGB image for the page: (face crop, p_real, judgment line, explanation)."""
    from ifas_eval.predict import judge_frames

    if image is None:
        return None, None, "No image: upload a photo or take one with the webcam.", ""
    rgb = np.asarray(image)
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    rgb = np.ascontiguousarray(rgb[..., :3]).astype(np.uint8)
    record, answers, _ = judge_frames(model, processor, [rgb], threshold=threshold, detect_faces=detect_faces,
                                      max_new_tokens=max_new_tokens, normalize=normalize)
    verdict = "REAL (live person)" if record["judgment"] == "real" else "FAKE (presentation attack)"
    face = "face detected" if record["face_box"] is not None else "no face found: the whole image was judged"
    line = f"{verdict}: p_real {record['p_real']:.4f} {'>=' if record['judgment'] == 'real' else '<'} " \
           f"threshold {threshold:.4f} ({face})"
    explanation = answer_text(record["answer"], record["explanation"])
    return answers[0]["crop"], record["p_real"], line, explanation


def build_demo(model: Any, processor: Any, *, threshold: float = 0.5, model_note: str = "",
               normalize: str = "vocab", detect_faces: bool = True) -> Any:
    """The Gradio `Blocks` app for ``model``; call ``.launch()`` on it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from the demo
    import gradio as gr

    def run(image: np.ndarray | None, thr: float) -> tuple[Any, float | None, str, str]:
        return judge_image(model, processor, image, float(thr), detect_faces=detect_faces, normalize=normalize)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\nAsked *\"Is this photo of a real person?\"*, the model answers with a judgment "
                    "and an interpretation." + (f"\n\n**{model_note}**" if model_note else ""))
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="Photo", type="numpy", sources=["upload", "webcam"], elem_id="photo")
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
