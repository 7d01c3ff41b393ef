"""Trainer data and checkpoint plumbing: corpus loading/validation, hold-out, batch order, pickle-free state."""

from __future__ import annotations

import pytest
from _train_corpus import build_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus") / "vqa", splits=("train",), max_rows=40)


def test_sampler_covers_every_row_once_and_ranks_are_disjoint():
    from ifas_model.training.data import ResumableBatchSampler

    one = ResumableBatchSampler(10, 3, seed=1)
    flat = [i for b in one for i in b]
    assert sorted(flat) == list(range(10)) and len(one) == 4
    ranks = [ResumableBatchSampler(10, 2, seed=1, rank=r, world_size=2) for r in range(2)]
    parts = [list(s) for s in ranks]
    assert len(parts[0]) == len(parts[1]) == len(ranks[0])
    seen = [i for p in parts for b in p for i in b]
    assert sorted(seen) == list(range(10))  # 10 is a multiple of 2: no padding
    # micro-batch k of the two ranks together is the k-th global batch of the single-process order
    assert sorted(parts[0][0] + parts[1][0]) == sorted(ResumableBatchSampler(10, 4, seed=1).__iter__().__next__())


def test_sampler_order_depends_on_seed_and_epoch_and_resumes_mid_epoch():
    from ifas_model.training.data import ResumableBatchSampler

    s = ResumableBatchSampler(20, 4, seed=0)
    s.set_epoch(1)
    full = list(s)
    s.set_epoch(1, start=2)
    assert list(s) == full[2:]
    s.set_epoch(2)
    assert list(s) != full
    assert list(ResumableBatchSampler(20, 4, seed=0, shuffle=False)) == [list(range(i, i + 4)) for i in range(0, 20, 4)]


def test_holdout_is_by_video_and_deterministic():
    from ifas_model.training.data import holdout_mask

    vids = [f"v{i // 2}" for i in range(400)]
    mask = holdout_mask(vids, 0.1)
    assert mask == holdout_mask(vids, 0.1)
    assert all(mask[i] == mask[i + 1] for i in range(0, 400, 2))  # frames of a video stay together
    assert 0.03 < sum(mask) / len(mask) < 0.2


def test_corpus_loads_and_eval_split_falls_back_to_holdout(corpus):
    from ifas_model.training.data import VQADataset, load_corpus, split_train_eval

    c = load_corpus(str(corpus))
    train, held, source = split_train_eval(c, "train", None, 0.3)
    assert source.startswith("holdout") and len(train) + len(held) == 40
    assert not set(train["video_id"]) & set(held["video_id"])
    assert split_train_eval(c, "train", "none", 0.3)[1] is None
    with pytest.raises(ValueError, match=r"'dev' not in the corpus \(splits: train\)"):
        split_train_eval(c, "train", "dev", 0.3)
    ds = VQADataset(train, "judgment-only")
    assert ds[0]["interpretation"] == "" and ds[0]["image"].size == (224, 224)
    general = VQADataset(train, "general-captions")
    fakes = [general[i] for i in range(len(general)) if general[i]["label"] == 0]
    assert fakes and all(f["interpretation"] in ("This is a photo of a man", "This is a picture of a person")
                         for f in fakes)


def test_schema_failure_is_one_line_naming_file_column_row(tmp_path, corpus):
    import datasets

    from ifas_model.training.data import load_corpus
    from scf.schema import SchemaError

    ds = datasets.load_from_disk(str(corpus))["train"]
    rows = ds.cast_column("image", datasets.Image(decode=False)).to_list()
    rows[5]["judgment"] = "Maybe"
    bad = tmp_path / "bad"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows, features=ds.features)}).save_to_disk(str(bad))
    with pytest.raises(SchemaError) as err:
        load_corpus(str(bad))
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg and "column 'judgment'" in msg and "row 5" in msg
    with pytest.raises(FileNotFoundError):
        load_corpus(str(tmp_path / "nowhere"))


def test_undecodable_image_gives_none_not_an_exception(tmp_path):
    from ifas_model.training.data import VQADataset, load_corpus

    path = build_corpus(tmp_path / "broken", corrupt_every=3, splits=("train",), max_rows=9)
    ds = VQADataset(load_corpus(str(path))["train"])
    images = [ds[i]["image"] for i in range(len(ds))]
    assert [im is None for im in images] == [i % 3 == 0 for i in range(9)]


def test_optimizer_and_rng_state_round_trip_without_pickle(tmp_path):
    import random

    import numpy as np
    import torch

    from ifas_model.training.checkpoint import load_tree, rng_state, save_tree, set_rng_state

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    save_tree(opt.state_dict(), tmp_path / "opt")
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    fresh.load_state_dict(load_tree(tmp_path / "opt"))
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for k in a["state"]:
        for name, value in a["state"][k].items():
            assert torch.equal(value, b["state"][k][name])
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))

    save_tree(rng_state(), tmp_path / "rng")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_tree(tmp_path / "rng"))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_checkpoint_listing_ignores_incomplete_saves(tmp_path):
    from ifas_model.training.checkpoint import checkpoint_dir, latest_checkpoint

    assert latest_checkpoint(tmp_path) is None
    for step in (2, 10):
        d = checkpoint_dir(tmp_path, step)
        d.mkdir(parents=True)
        (d / "trainer_state.json").write_text("{}")
    (checkpoint_dir(tmp_path, 12).with_name("step-00000012.tmp")).mkdir()
    assert latest_checkpoint(tmp_path).name == "step-00000010"


def test_protocol_selection_sources_and_several_training_splits(tmp_path):
    # A protocol setting trains on named sources and, for FLIP's MCIO lists, on train + test splits.
    from ifas_model.training.data import load_corpus, select_sources, split_train_eval

    c = load_corpus(str(build_corpus(tmp_path / "vqa", splits=("train", "test"))))
    picked = select_sources(c, "sample-domain-b, sample-domain-d")
    assert {s for split in picked.values() for s in split["source"]} == {"sample-domain-b", "sample-domain-d"}
    assert select_sources(c, None) is c
    with pytest.raises(ValueError, match=r"'OULU-NPU' not in the corpus \(sources: sample-domain-a"):
        select_sources(c, "OULU-NPU")
    train, held, source = split_train_eval(picked, "train,test", None, 0.3)
    assert len(train) + len(held) == len(picked["train"]) + len(picked["test"]) and source.startswith("holdout")
    train, evaluation, source = split_train_eval(picked, "train", None, 0.3)
    assert source == "test" and set(evaluation["source"]) == {"sample-domain-b", "sample-domain-d"}
    with pytest.raises(ValueError, match="'test' is a training split"):
        split_train_eval(picked, "train,test", "test", 0.3)

    # NAME:SPLITS keeps only those splits of a source (mcio-celeba: CelebA-Spoof [train], others [train, test])
    mixed = select_sources(c, "sample-domain-b:train,sample-domain-d")
    assert set(mixed["train"]["source"]) == {"sample-domain-b", "sample-domain-d"}
    assert set(mixed["test"]["source"]) == {"sample-domain-d"}
    assert len(mixed["train"]) == len(picked["train"])
    assert len(mixed["test"]) == sum(1 for x in picked["test"]["source"] if x == "sample-domain-d")
    with pytest.raises(ValueError, match=r"sample-domain-b:dev: split\(s\) dev not in the corpus"):
        select_sources(c, "sample-domain-b:dev")
    with pytest.raises(ValueError, match="expected NAME or NAME:SPLIT"):
        select_sources(c, "sample-domain-b:")
    with pytest.raises(ValueError, match="names 'sample-domain-b' twice"):
        select_sources(c, "sample-domain-b:train,sample-domain-b")


def _with_dev(corpus_path, out, source="sample-domain-d"):
    """The corpus plus a ``dev`` split holding only ``source``'s test rows (as OULU/Replay dev in a full corpus)."""
    import datasets

    ds = datasets.load_from_disk(str(corpus_path))
    dev = ds["test"].filter(lambda s: s == source, input_columns="source")
    datasets.DatasetDict({**ds, "dev": dev}).save_to_disk(str(out))
    return out


def test_eval_split_skips_splits_emptied_by_the_source_filter(tmp_path):
    from ifas_model.training.data import load_corpus, select_sources, split_train_eval

    base = build_corpus(tmp_path / "vqa", splits=("train", "test"), max_rows=24)
    corpus = load_corpus(str(_with_dev(base, tmp_path / "devcorp")))
    picked = select_sources(corpus, "sample-domain-b")
    assert len(picked["dev"]) == 0 and len(picked["test"]) > 0
    _, evaluation, source = split_train_eval(picked, "train", None, 0.1, sources="sample-domain-b")
    assert source == "test" and set(evaluation["source"]) == {"sample-domain-b"}
    # with every source, dev has rows and is chosen as before
    assert split_train_eval(corpus, "train", None, 0.1)[2] == "dev"
    # train on train+test: dev is empty, so the hold-out
    assert split_train_eval(picked, "train,test", None, 0.1)[2].startswith("holdout")
    # an explicitly named split that the filter emptied is refused, naming the split and the sources
    with pytest.raises(ValueError, match="evaluation split 'dev' holds no rows for source[(]s[)] sample-domain-b"):
        split_train_eval(picked, "train", "dev", 0.1, sources="sample-domain-b")


def test_eval_subsample_is_seeded_and_stratified_by_source_and_label(tmp_path):
    from collections import Counter

    from ifas_model.training.data import load_corpus, stratified_subsample

    table = load_corpus(str(build_corpus(tmp_path / "vqa", splits=("test",))))["test"]
    strata = Counter(zip(table["source"], table["label"], strict=True))
    assert len(strata) == 8  # 4 domains x (real, attack)
    picked = stratified_subsample(table, 40, seed=0)
    got = Counter(zip(picked["source"], picked["label"], strict=True))
    assert len(picked) == 40 and set(got) == set(strata)  # every (source, label) is represented
    for key, n in strata.items():  # proportional shares, within one row
        assert abs(got[key] - 40 * n / len(table)) <= 1, (key, got[key], n)
    first = Counter(table.select(range(40))["source"])
    assert len(first) < 4  # what the first N rows gave: not every source
    again = stratified_subsample(table, 40, seed=0)
    other = stratified_subsample(table, 40, seed=1)
    assert list(again["video_id"]) == list(picked["video_id"])
    assert list(other["video_id"]) != list(picked["video_id"])
    assert stratified_subsample(table, len(table), seed=0) is table


def test_corpus_fingerprint_follows_content_not_path(tmp_path):
    import shutil

    from ifas_model.training.data import corpus_fingerprint, load_corpus

    a = build_corpus(tmp_path / "a", splits=("train",), max_rows=12)
    moved = tmp_path / "elsewhere" / "a"
    shutil.copytree(a, moved)
    b = build_corpus(tmp_path / "b", splits=("train",), max_rows=10)
    fa = corpus_fingerprint(load_corpus(str(a)))
    assert fa == corpus_fingerprint(load_corpus(str(moved)))
    assert fa["rows"] == {"train": 12} and len(fa["sha1"]["train"]) == 40
    assert corpus_fingerprint(load_corpus(str(b))) != fa


def test_a_benchmark_dataset_is_named_as_such(tmp_path):
    from ifas_model.training.data import load_corpus
    from scf.sample import build_sample
    from scf.schema import SchemaError

    build_sample(0).save_to_disk(str(tmp_path / "bench"))
    with pytest.raises(SchemaError, match="looks like a benchmark dataset.*run `scf caption"):
        load_corpus(str(tmp_path / "bench"))
