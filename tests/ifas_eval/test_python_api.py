"""The toolkit called from a notebook (review 13): `load_checkpoint` with torch objects, `judge`'s input checks,
and docs/metrics.md's Python block run as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

DOCS = Path(__file__).parents[2] / "docs"


@pytest.fixture(scope="module")
def loaded(tiny_ckpt):
    """The tiny checkpoint loaded the natural Python way: a Path, a torch.device and a torch.dtype (M4)."""
    from ifas_eval.scoring import load_checkpoint

    return load_checkpoint(tiny_ckpt, device=torch.device("cpu"), dtype=torch.bfloat16)


def test_load_checkpoint_takes_torch_device_dtype_and_path(loaded, tiny_ckpt):
    """Before: ``dtype=torch.bfloat16`` was a bare KeyError, ``device=torch.device('cpu')`` an AttributeError."""
    from ifas_eval.predict import judge
    from ifas_eval.scoring import load_checkpoint

    model, processor = loaded
    assert next(model.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).device == torch.device("cpu")
    assert not model.training
    same, _ = load_checkpoint(str(tiny_ckpt), device="cpu", dtype="bf16")  # the string forms, as before
    face = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    a = judge(model, processor, face, detect_faces=False, max_new_tokens=2)
    b = judge(same, processor, face, detect_faces=False, max_new_tokens=2)
    assert a == b and a["p_real"] == b["p_real"]


@pytest.mark.parametrize("dtype", ["half", "float64", torch.float64, 16, None])
def test_an_unknown_dtype_is_a_value_error_listing_the_choices(dtype, tiny_ckpt):
    from ifas_eval.scoring import load_checkpoint

    with pytest.raises(ValueError, match=r"^dtype must be one of auto, float32, bfloat16, float16 \(or bf16, fp16, "
                                         r"fp32, or torch.float32 / torch.bfloat16 / torch.float16\), got "):
        load_checkpoint(tiny_ckpt, device="cpu", dtype=dtype)


def test_device_errors_from_python_name_the_argument_not_a_cli_option(tiny_ckpt):
    from ifas_eval.scoring import load_checkpoint, pick_device

    assert pick_device(torch.device("cpu")) == "cpu"
    with pytest.raises(ValueError, match=r"^device 'gpu0': not a device \(use auto, cpu, cuda or cuda:N\)$"):
        load_checkpoint(tiny_ckpt, device="gpu0")
    with pytest.raises(ValueError, match=r"^device 'cuda:99': ") as info:
        load_checkpoint(tiny_ckpt, device=torch.device("cuda:99"))
    assert "--device" not in str(info.value)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^device 'cuda': no CUDA GPU is available \(use cpu or auto\)$"):
            load_checkpoint(tiny_ckpt, device="cuda")
    # the commands keep naming their option
    with pytest.raises(ValueError, match=r"^--device gpu0: not a device"):
        pick_device("gpu0", option="--device")
    with pytest.raises(TypeError, match="device must be a string"):
        pick_device(0)


@pytest.mark.parametrize("empty", [np.zeros((0, 0, 3), np.uint8), np.zeros((0, 5), np.uint8)])
def test_judge_refuses_an_empty_array_with_a_clear_error(loaded, empty):
    """Before: an OpenCV assertion (``!_src.empty() in function 'cvtColor'``)."""
    from ifas_eval.predict import judge

    model, processor = loaded
    with pytest.raises(ValueError, match=re.escape(f"an empty image array (shape {empty.shape}): nothing to judge")):
        judge(model, processor, empty)


def test_judge_refuses_an_empty_pil_image(loaded):
    from PIL import Image

    from ifas_eval.predict import judge

    model, processor = loaded
    with pytest.raises(ValueError, match=r"an empty image \(0 x 7 pixels\)"):
        judge(model, processor, Image.new("RGB", (0, 7)))


@pytest.mark.parametrize("threshold", ["0.5", None, [0.5]])
def test_judge_refuses_a_threshold_that_is_not_a_number(loaded, threshold, tmp_path):
    """Before: ``TypeError: '>=' not supported between instances of 'float' and 'str'`` after the generation."""
    from ifas_eval.predict import judge

    model, processor = loaded
    with pytest.raises(TypeError, match=r"^threshold must be a number \(P\(real\) at or above it is judged real\)"):
        judge(model, processor, np.zeros((8, 8, 3), np.uint8), threshold=threshold)
    with pytest.raises(TypeError, match="^threshold must be a number"):  # checked before the file is read
        judge(model, processor, tmp_path / "missing.jpg", threshold=threshold)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        judge(model, processor, np.zeros((8, 8, 3), np.uint8), threshold=float("nan"))


@pytest.mark.parametrize("threshold", ["0.5", float("nan")])
def test_judge_frames_checks_its_threshold_before_generating(loaded, threshold, monkeypatch):
    """judge_frames (the per-input step of judge, public) compared a str threshold after the generation."""
    import ifas_model.inference
    from ifas_eval.predict import judge_frames

    model, processor = loaded
    calls = []
    monkeypatch.setattr(ifas_model.inference, "explain_images", lambda *a, **k: calls.append(a) or [])
    with pytest.raises((TypeError, ValueError), match="^threshold must be a"):
        judge_frames(model, processor, [np.zeros((8, 8, 3), np.uint8)], threshold=threshold)
    assert calls == []


def test_the_python_block_of_docs_metrics_runs_and_prints_what_its_comments_say(capsys):
    """Review 13 L2: docs/metrics.md's Python example, executed verbatim; each ``print(...)  # text`` line's
    output must be ``text``."""
    doc = (DOCS / "metrics.md").read_text()
    section = doc.split("### The same in Python, on your own arrays", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    expected = [line.split("  # ", 1)[1].strip() for line in code.splitlines()
                if line.startswith("print(") and "  # " in line]
    assert len(expected) == 4
    exec(compile(code, "docs/metrics.md", "exec"), {})
    assert capsys.readouterr().out.splitlines() == expected
    assert expected[0] == "0.75 0.5 0.5 0.5"  # the worked example's AUC, threshold, HTER, TPR@FPR=1%
