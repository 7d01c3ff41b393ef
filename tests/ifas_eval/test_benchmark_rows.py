"""Selecting test-set rows and reading their metadata: one Arrow read per column (review 15 L1)."""

from __future__ import annotations


def _table():
    import datasets

    n = 12
    ds = datasets.Dataset.from_dict({
        "label": [i % 2 for i in range(n)],
        "video_id": [f"v{i // 2}" if i < 8 else f"B/v{i}" for i in range(n)],
        "attack_type": ["live" if i % 2 else "print" for i in range(n)],
        "frame_index": list(range(n)),
        "path": [f"p{i}.png" for i in range(n)],
        "source": ["A" if i < 8 else "B" for i in range(n)],
    })
    return datasets.DatasetDict({"test": ds, "train": ds.select(range(4))})


def test_source_column_is_read_once_per_split_and_rows_keep_their_order(monkeypatch):
    from ifas_eval import scoring
    from ifas_eval.protocols import Selection
    from ifas_eval.scoring import BenchmarkData

    reads = []
    real = scoring.column_arrays

    def counting(ds, names):
        reads.append(tuple(names))
        return real(ds, names)

    monkeypatch.setattr(scoring, "column_arrays", counting)
    data = BenchmarkData("t", [("t", _table())])
    a = data.select_rows((Selection("A", ("test", "train")),), "test set 'a'")
    b = data.select_rows((Selection("B", ("test",)),), "test set 'b'")
    again = data.select_rows((Selection("A", ("test",)),), "test set 'a2'")
    assert reads.count(("source",)) == 2  # test and train, once each, for three test sets
    assert a.origins == [("t", "test", i) for i in range(8)] + [("t", "train", i) for i in range(4)]
    assert b.origins == [("t", "test", 8), ("t", "test", 9), ("t", "test", 10), ("t", "test", 11)]
    assert list(b.ds["path"]) == ["p8.png", "p9.png", "p10.png", "p11.png"]
    assert len(again.origins) == 8


def test_metadata_of_selected_rows_matches_row_by_row_reading():
    from ifas_eval.runner import count_videos
    from ifas_eval.scoring import _meta_rows

    ds = _table()["test"].select([11, 3, 8, 0])  # indices-mapped, out of order
    labels, videos, attacks, frames, paths = _meta_rows(ds)
    assert labels == [1, 1, 0, 0]
    assert videos == ["B/v11", "A/v1", "B/v8", "A/v0"]  # the source is prefixed once
    assert attacks == ["live", "live", "print", "print"]
    assert frames == [11, 3, 8, 0]
    assert paths == ["p11.png", "p3.png", "p8.png", "p0.png"]
    assert count_videos(ds) == (4, 2, 2)
