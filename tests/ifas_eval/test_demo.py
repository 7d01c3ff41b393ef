"""The one-image web demo: the judging function, and the page driven in a real headless browser."""

from __future__ import annotations

import shutil
import socket

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def tiny():
    import torch

    from ifas_model.presets import build_model

    torch.manual_seed(0)
    model, processor = build_model("tiny")
    return model.eval(), processor


@pytest.fixture(scope="module")
def face_photo(tmp_path_factory):
    import skimage.data
    from PIL import Image

    path = tmp_path_factory.mktemp("demo") / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


def test_judge_image_matches_ifas_predict(tiny, face_photo):
    from PIL import Image

    from ifas_eval.demo import judge_image
    from ifas_eval.predict import predict_inputs

    model, processor = tiny
    rgb = np.asarray(Image.open(face_photo).convert("RGB"))
    crop, p_real, line, explanation = judge_image(model, processor, rgb, 0.25)
    (record,) = predict_inputs(model, processor, [str(face_photo)], threshold=0.25)
    assert crop.size == (224, 224)
    assert p_real == pytest.approx(record["p_real"], abs=1e-6)
    assert "threshold 0.2500" in line and "face detected" in line
    assert line.startswith("REAL" if record["judgment"] == "real" else "FAKE")
    assert explanation.startswith(record["answer"])
    # the page shows the answer as training writes it: "Yes. This is ...", not "Yes This is ..."
    from ifas_eval.demo import answer_text

    assert explanation == answer_text(record["answer"], record["explanation"])
    assert answer_text("Yes", "This is a man.") == "Yes. This is a man."
    assert answer_text("No", "") == "No" and answer_text("", "This is a man.") == "This is a man."
    assert judge_image(model, processor, None, 0.5)[2].startswith("No image")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run does)")
def test_page_in_a_real_browser(tiny, face_photo):
    from playwright.sync_api import sync_playwright

    from ifas_eval.demo import build_demo

    model, processor = tiny
    app = build_demo(model, processor, threshold=0.3, model_note="tiny random model")
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle", timeout=60_000)
            assert "tiny random model" in page.content()
            page.locator("#photo input[type=file]").set_input_files(str(face_photo))
            page.wait_for_timeout(500)
            page.locator("#judge").click()
            judgment = page.locator("#judgment textarea")
            page.wait_for_function(
                "() => document.querySelector('#judgment textarea').value.length > 0", timeout=60_000)
            text = judgment.input_value()
            explanation = page.locator("#explanation textarea").input_value()
            p_real = float(page.locator("#p_real input").input_value())
            browser.close()
    finally:
        app.close()
    assert text.startswith(("REAL", "FAKE")) and "threshold 0.3000" in text and "face detected" in text
    assert 0.0 <= p_real <= 1.0
    assert explanation  # the generated answer (noise for a random model, but produced by the real path)
