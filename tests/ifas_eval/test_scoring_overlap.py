"""The scoring loop's GPU feeding (review24 H2): batches built in the prefetch threads, scores read back one
batch late. On CPU the scores and score files are bit-identical to one processor call and one forward pass
per batch, written batch by batch (what the loop did before); corrupt images and resume behave as before."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tiny(tiny_ckpt):
    from ifas_model.modeling import IFASForConditionalGeneration
    from ifas_model.processing import IFASProcessor

    return IFASForConditionalGeneration.from_pretrained(tiny_ckpt).eval(), IFASProcessor.from_pretrained(tiny_ckpt)


@pytest.fixture(scope="module")
def rows70():
    from scf.sample import build_sample

    return build_sample()["test"].select(range(70))


def _reference_file(model, processor, ds, batch_size, path):
    """The score file of the plain loop: one processor call, one forward pass, one append per batch."""
    import numpy as np
    import torch

    from ifas_eval import scorefile
    from ifas_eval.scoring import _meta_rows

    labels, videos, attacks, frames, paths = _meta_rows(ds)
    scorefile.write_header(path)
    for lo in range(0, len(ds), batch_size):
        hi = min(len(ds), lo + batch_size)
        inputs = processor([ds[i]["image"] for i in range(lo, hi)])
        with torch.inference_mode():
            p = model.score(**inputs, normalize="vocab")
        scores = p.float().cpu().numpy().astype(np.float64)
        scorefile.append_rows(path, zip(videos[lo:hi], labels[lo:hi], scores.tolist(), attacks[lo:hi],
                                        frames[lo:hi], paths[lo:hi], strict=True))
    return path.read_bytes()


@pytest.mark.parametrize(("batch_size", "threads"), [(7, 0), (40, 3), (100, 2)])
def test_scores_and_score_file_are_bit_identical_to_the_plain_loop(tiny, rows70, tmp_path, batch_size, threads):
    from ifas_eval.scoring import score_test_set

    model, processor = tiny
    expected = _reference_file(model, processor, rows70, batch_size, tmp_path / "ref.csv")
    out = tmp_path / "t.csv"
    got = score_test_set(model, processor, rows70, "t", out, batch_size=batch_size, decode_threads=threads)
    assert out.read_bytes() == expected
    assert len(got) == 70 and not (tmp_path / "t.csv.partial").exists()


def test_batches_are_assembled_in_the_threads_equal_to_one_processor_call(tiny, rows70):
    import torch

    from ifas_eval.scoring import RowSet, _prepared_batches, _raw_images

    _, processor = tiny
    rows = RowSet(rows70, [("s", "test", i) for i in range(70)])
    bounds = [(0, 70), (0, 5), (5, 69)]  # 70 = 2 chunks of 32 + 6; a batch smaller than a chunk
    for (lo, hi), got in zip(bounds, _prepared_batches(rows, _raw_images(rows70), processor, bounds, threads=3),
                             strict=True):
        want = processor([rows70[i]["image"] for i in range(lo, hi)])
        assert got.keys() == want.keys()
        for k in want:
            assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
            assert not got[k].is_pinned()  # pinned only on CUDA (pin=True)


def test_a_batch_handed_out_is_held_by_the_caller_only(tiny, rows70):
    import gc
    import weakref

    from ifas_eval.scoring import RowSet, _prepared_batches, _raw_images

    _, processor = tiny
    rows = RowSet(rows70, [("s", "test", i) for i in range(70)])
    gen = _prepared_batches(rows, _raw_images(rows70), processor, [(0, 35), (35, 70)], threads=2)
    batch = next(gen)
    pixels = weakref.ref(batch["pixel_values"])
    del batch
    gc.collect()
    assert pixels() is None  # freed before the next batch is asked for (one batch less in memory)
    assert next(gen)["pixel_values"].shape[0] == 35


def test_a_corrupt_image_writes_every_batch_before_it_then_stops(tiny, rows70, tmp_path):
    import datasets

    from ifas_eval.scoring import CorruptImageError, RowSet, score_test_set

    model, processor = tiny
    raw = rows70.cast_column("image", datasets.Image(decode=False))
    ds = raw.map(lambda row, i: {"image": {"bytes": b"garbage", "path": None}} if i == 45 else row,
                 with_indices=True).cast_column("image", datasets.Image())
    rows = RowSet(ds, [("bench", "test", i) for i in range(70)])
    expected = _reference_file(model, processor, rows70.select(range(40)), 20, tmp_path / "ref.csv")
    out = tmp_path / "t.csv"
    for threads in (0, 2):
        with pytest.raises(CorruptImageError, match=r"^bench \[test\] row 45 .*corrupt image"):
            score_test_set(model, processor, rows, "t", out, batch_size=20, decode_threads=threads)
        # batches 0-19 and 20-39 were scored (the second read back only when the third failed)
        assert (tmp_path / "t.csv.partial").read_bytes() == expected
        (tmp_path / "t.csv.partial").unlink()


class _Crash(RuntimeError):
    pass


def test_a_crash_mid_run_keeps_the_launched_batches_and_resume_is_byte_identical(tiny, rows70, tmp_path):
    from ifas_eval.scoring import score_test_set

    model, processor = tiny
    expected = _reference_file(model, processor, rows70, 16, tmp_path / "ref.csv")
    calls = []
    real_score = model.score

    def crashing_score(**kw):
        calls.append(len(kw["pixel_values"]))
        if len(calls) == 3:
            raise _Crash("out of memory")
        return real_score(**kw)

    out = tmp_path / "t.csv"
    model.score = crashing_score
    try:
        with pytest.raises(_Crash):
            score_test_set(model, processor, rows70, "t", out, batch_size=16, decode_threads=2)
    finally:
        del model.score
    partial = tmp_path / "t.csv.partial"
    assert partial.read_bytes().count(b"\n") == 1 + 32  # header + the two batches scored before the crash
    with partial.open("ab") as fh:  # a torn row, as a kill mid-write leaves: cut back to the last whole batch
        fh.write(b"sample-domain-a/x,1,0.5")
    score_test_set(model, processor, rows70, "t", out, batch_size=16, decode_threads=2)
    assert out.read_bytes() == expected


class _FakeModel:
    """Records when each batch is launched; `score` returns sigmoid(first pixel value) as each image's score."""

    def __init__(self, log):
        import torch

        self.log = log
        self.weight = torch.zeros(1)

    def get_input_embeddings(self):
        return self

    def eval(self):
        return self

    def score(self, pixel_values, normalize, **_):
        self.log.append(("launch", len(pixel_values)))
        import torch

        return torch.sigmoid(pixel_values[:, 0, 0, 0])


def test_scores_are_read_back_one_batch_late_in_order(tiny, rows70, tmp_path, monkeypatch):
    import numpy as np

    from ifas_eval import scorefile
    from ifas_eval.scoring import score_test_set

    _, processor = tiny
    log = []
    real_append = scorefile.append_rows

    def append_rows(path, rows):
        rows = list(rows)
        log.append(("write", len(rows)))
        return real_append(path, rows)

    monkeypatch.setattr(scorefile, "append_rows", append_rows)
    got = score_test_set(_FakeModel(log), processor, rows70, "t", tmp_path / "t.csv", batch_size=30,
                         decode_threads=2)
    assert log == [("launch", 30), ("launch", 30), ("write", 30), ("launch", 10), ("write", 30), ("write", 10)]
    pixels = processor([rows70[i]["image"] for i in range(70)])["pixel_values"]
    np.testing.assert_array_equal(got.scores, pixels[:, 0, 0, 0].sigmoid().double().numpy())  # rows in order


def test_a_launched_batch_is_not_kept_alive_by_the_loop(tiny, rows70, tmp_path):
    """review27 M1: the loop kept the two previous batches' inputs (147 MiB of pinned pixels each at batch 256)
    alive while launching the next; once launched, a batch's pixels are freed."""
    import gc
    import weakref

    from ifas_eval.scoring import score_test_set

    _, processor = tiny
    seen = []

    class Model(_FakeModel):
        def score(self, pixel_values, normalize, **kw):
            gc.collect()
            alive = sum(ref() is not None for ref in seen)
            seen.append(weakref.ref(pixel_values))
            self.log.append(("alive before launch", alive))
            return super().score(pixel_values, normalize, **kw)

    log = []
    score_test_set(Model(log), processor, rows70, "t", tmp_path / "t.csv", batch_size=10, decode_threads=2)
    assert [n for what, n in log if what == "alive before launch"] == [0] * 7


def test_one_batch_late_hands_out_the_launched_batch_before_an_error():
    from ifas_eval.scoring import _one_batch_late

    log = []

    def jobs():
        yield 0
        yield 1
        raise _Crash("job 2 cannot be built")

    def launch(job):
        log.append(("launch", job))
        return job * 10

    with pytest.raises(_Crash):
        for job, result in _one_batch_late(jobs(), launch):
            log.append(("read", job, result))
    assert log == [("launch", 0), ("launch", 1), ("read", 0, 0), ("read", 1, 10)]

    log.clear()

    def bad_launch(job):
        if job == 1:
            raise _Crash("launch failed")
        return launch(job)

    with pytest.raises(_Crash):
        for job, result in _one_batch_late([0, 1, 2], bad_launch):
            log.append(("read", job, result))
    assert log == [("launch", 0), ("read", 0, 0)]
    assert list(_one_batch_late([], launch)) == []


@pytest.mark.gpu
def test_cuda_batches_are_pinned_and_scores_match_the_plain_loop(tiny_ckpt, rows70, tmp_path):
    import numpy as np
    import torch

    from ifas_eval.scoring import RowSet, _prepared_batches, _raw_images, score_test_set
    from ifas_model.modeling import IFASForConditionalGeneration
    from ifas_model.processing import IFASProcessor

    processor = IFASProcessor.from_pretrained(tiny_ckpt)
    rows = RowSet(rows70, [("s", "test", i) for i in range(70)])
    batch = next(iter(_prepared_batches(rows, _raw_images(rows70), processor, [(0, 70)], threads=3, pin=True)))
    assert all(v.is_pinned() for v in batch.values())
    model = IFASForConditionalGeneration.from_pretrained(tiny_ckpt, dtype=torch.float32).to("cuda").eval()
    got = score_test_set(model, processor, rows70, "t", tmp_path / "t.csv", batch_size=16)  # 8 threads, pinned
    model_cpu = IFASForConditionalGeneration.from_pretrained(tiny_ckpt, dtype=torch.float32).eval()
    want = score_test_set(model_cpu, processor, rows70, "t", tmp_path / "c.csv", batch_size=16)
    assert list(got.video_ids) == list(want.video_ids)
    np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-4)
