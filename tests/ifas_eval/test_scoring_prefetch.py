"""Scoring a test set with the image pipeline in background threads gives the same scores as without."""

from __future__ import annotations

import numpy as np


def test_prefetched_batches_equal_one_processor_call_per_batch(tiny_ckpt):
    import torch

    from ifas_eval.scoring import RowSet, _prepared_batches, _raw_images
    from ifas_model.processing import IFASProcessor
    from scf.sample import build_sample

    processor = IFASProcessor.from_pretrained(tiny_ckpt)
    ds = build_sample()["test"].select(range(70))
    rows = RowSet(ds, [("sample", "test", i) for i in range(len(ds))])
    raw = _raw_images(ds)
    bounds = [(0, 40), (40, 70)]  # 40 spans two chunks of 32
    plain = list(_prepared_batches(rows, raw, processor, bounds, threads=0))
    threaded = list(_prepared_batches(rows, raw, processor, bounds, threads=3))
    assert len(plain) == len(threaded) == 2
    for a, b in zip(plain, threaded, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_score_test_set_is_the_same_with_decode_threads(tiny_ckpt, tmp_path):
    from ifas_eval.scoring import score_test_set
    from ifas_model.inference import score_images
    from ifas_model.modeling import IFASForConditionalGeneration
    from ifas_model.processing import IFASProcessor
    from scf.sample import build_sample

    model = IFASForConditionalGeneration.from_pretrained(tiny_ckpt)
    processor = IFASProcessor.from_pretrained(tiny_ckpt)
    ds = build_sample()["test"].select(range(24))
    a = score_test_set(model, processor, ds, "t", tmp_path / "a.csv", batch_size=10, decode_threads=0)
    b = score_test_set(model, processor, ds, "t", tmp_path / "b.csv", batch_size=10, decode_threads=2)
    np.testing.assert_array_equal(a.scores, b.scores)
    reference = score_images(model, processor, list(ds["image"]), batch_size=10)
    np.testing.assert_allclose(a.scores, reference, rtol=0, atol=1e-6)
