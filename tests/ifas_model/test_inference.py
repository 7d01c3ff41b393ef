"""Batched inference: score_images and explain_images agree with the model's own score."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def built():
    from ifas_model.presets import build_model

    return build_model("tiny", seed=0)


def _images(n):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)) for _ in range(n)]


def test_score_images_matches_model_score_and_ignores_batch_size(built):
    import numpy as np

    from ifas_model.inference import score_images

    model, processor = built
    images = _images(5)
    scores = score_images(model, processor, images, batch_size=2)
    assert scores.shape == (5,) and scores.dtype == np.float32
    assert ((scores >= 0) & (scores <= 1)).all()
    score = model.score(**processor(images)).numpy()
    np.testing.assert_allclose(scores, score, atol=1e-6)
    np.testing.assert_allclose(score_images(model, processor, images, batch_size=5), scores, atol=1e-6)
    two_way = score_images(model, processor, images, normalize="yes_no")
    assert not np.allclose(two_way, scores)  # the untrained model puts mass outside " Yes" / " No"
    with pytest.raises(ValueError, match="batch_size"):
        score_images(model, processor, images, batch_size=0)


def test_explain_images_returns_judgment_explanation_and_the_same_p_real(built):
    import numpy as np

    from ifas_model.inference import explain_images, score_images

    model, processor = built
    images = _images(3)
    answers = explain_images(model, processor, images, max_new_tokens=5, batch_size=2)
    assert [set(a) for a in answers] == [{"p_real", "judgment", "explanation"}] * 3
    assert all(isinstance(a["judgment"], str) and isinstance(a["explanation"], str) for a in answers)
    np.testing.assert_allclose([a["p_real"] for a in answers], score_images(model, processor, images),
                               atol=1e-5)
    beams = explain_images(model, processor, images[:2], max_new_tokens=3, num_beams=2)
    np.testing.assert_allclose([a["p_real"] for a in beams], [a["p_real"] for a in answers[:2]], atol=1e-5)


def test_explain_images_parses_a_yes_answer(built, monkeypatch):
    """With generation forced to emit " Yes. This is a man </s>", the dict holds exactly that answer."""
    import torch

    from ifas_model.inference import explain_images

    model, processor = built
    tok = processor.tokenizer
    answer = [processor.judgment_token_ids["Yes"], *tok(". This is a man", add_special_tokens=False)["input_ids"],
              tok.eos_token_id]

    def forced(**kw):
        batch = kw["input_ids"].shape[0]
        vocab = model.config.text_config.vocab_size
        logits = torch.zeros(batch, vocab)
        logits[:, answer[0]] = 10.0
        return type("Out", (), {"sequences": torch.tensor([answer] * batch), "logits": (logits,)})()

    monkeypatch.setattr(model, "generate", forced)
    result = explain_images(model, processor, _images(2), max_new_tokens=8)
    assert [r["judgment"] for r in result] == ["Yes", "Yes"]
    assert [r["explanation"] for r in result] == ["This is a man", "This is a man"]
    # P(real) is the score of the same images (the pass ifas-eval scores with), not read off generate
    from ifas_model.inference import score_images

    assert [r["p_real"] for r in result] == pytest.approx(list(score_images(model, processor, _images(2))),
                                                           abs=1e-6)


def test_bf16_scores_use_an_fp32_answer_row_and_explain_reports_the_same_number(built):
    """In bf16 the answer-position LM head runs in fp32: scores keep their resolution (no bf16 logit steps)
    and stay close to the fp32 model's; explain_images reports exactly score's number."""
    import copy

    import numpy as np
    import torch

    from ifas_model.inference import explain_images, score_images

    model, processor = built
    images = _images(4)
    fp32 = np.asarray(score_images(model, processor, images))
    half = copy.deepcopy(model).to(torch.bfloat16)
    bf16 = np.asarray(score_images(half, processor, images))
    np.testing.assert_allclose(bf16, fp32, atol=2e-2)
    answers = explain_images(half, processor, images, max_new_tokens=3)
    assert [a["p_real"] for a in answers] == pytest.approx(list(bf16), abs=1e-7)


@pytest.mark.parametrize(("bad", "needle"), [
    (["face.jpg"], "images[0] is a str, not a PIL image; pass PIL images of face crops"),
    ("face.jpg", "images must be a list of PIL images, got str"),
    ("array", "images[1] is a numpy.ndarray, not a PIL image"),
    ("one image", "got one image; wrap it in a list"),
])
def test_paths_arrays_and_a_bare_image_are_refused_naming_the_argument(built, bad, needle):
    import numpy as np

    from ifas_model.inference import explain_images, score_images

    model, processor = built
    if bad == "array":
        bad = [_images(1)[0], np.zeros((60, 50, 3), dtype=np.uint8)]
    elif bad == "one image":
        bad = _images(1)[0]
    for function in (score_images, explain_images):
        with pytest.raises(TypeError) as info:
            function(model, processor, bad)
        assert str(info.value).startswith(f"{function.__name__}: ") and needle in str(info.value)
