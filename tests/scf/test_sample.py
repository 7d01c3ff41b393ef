"""The embedded synthetic sample and the spoof simulator."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from scf import schema, spoof
from scf.sample import SAMPLE_SOURCES, build_sample, live_faces, sample_rows, write_sample, write_sample_files


def _pixels(row) -> np.ndarray:
    return np.asarray(row["image"].convert("RGB"), dtype=np.float32) / 255


def test_sample_is_valid_balanced_and_cross_domain():
    ds = build_sample(0)
    assert set(ds) == {"train", "test"}
    for split, d in ds.items():
        schema.validate_dataset(d, file=f"sample[{split}]")
        assert set(d["source"]) == set(SAMPLE_SOURCES) and len(SAMPLE_SOURCES) >= 3
        assert set(d["attack_type"]) == {"live", "print", "replay"}
        assert all("synthetic" in x for x in d["attack_detail"])
        assert all(s.startswith("sample-") for s in d["source"])
    # subject-disjoint splits, frames of a video share its id
    assert not set(ds["train"]["subject_id"]) & set(ds["test"]["subject_id"])
    videos = {}
    for r in ds["train"].select_columns(["video_id", "frame_index"]):
        videos.setdefault(r["video_id"], []).append(r["frame_index"])
    assert all(sorted(f) == [0, 1] for f in videos.values())
    img = ds["test"][0]["image"]
    assert img.size == (224, 224) and img.mode == "RGB"


def test_sample_is_deterministic_for_a_seed():
    a = sample_rows(3)[:6]
    b = sample_rows(3)[:6]
    c = sample_rows(4)[:6]
    assert [r["image"]["bytes"] for r in a] == [r["image"]["bytes"] for r in b]
    assert [r["image"]["bytes"] for r in a] != [r["image"]["bytes"] for r in c]


def test_live_faces_come_from_shipped_photos():
    faces = live_faces()
    assert [s for s, _ in faces[:2]] == ["astronaut", "grace-hopper"]
    assert len(faces) >= 10 and all(f.shape == (256, 256, 3) for _, f in faces)


def _high_frequency_energy(img: np.ndarray) -> float:
    gray = img.mean(axis=2)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean())))
    h, w = gray.shape
    yy, xx = np.ogrid[:h, :w]
    r = np.hypot(yy - h / 2, xx - w / 2)
    return float(spectrum[r > min(h, w) / 4].sum() / spectrum.sum())


def test_attack_cues_are_present():
    rng = np.random.default_rng(0)
    face = live_faces()[0][1]
    printed, kind = spoof.render_print(face, rng)
    assert kind and printed.shape == face.shape and printed.dtype == np.float32
    # reduced gamut: seen from a distance (the halftone dots averaged), the print's colours are less saturated
    sat = lambda x: float((x.max(axis=2) - x.min(axis=2)).mean())  # noqa: E731
    assert sat(spoof.gaussian_blur(printed, 3.0)) < sat(spoof.gaussian_blur(face, 3.0))
    assert printed.min() > face.min() and printed.max() < face.max() + 1e-6
    # halftone dots add high-frequency energy before the camera blurs them
    dots = spoof.halftone(face, rng)
    assert _high_frequency_energy(dots) > 2 * _high_frequency_energy(face)
    # replay: the pixel grid is periodic at the screen pitch
    grid = spoof.pixel_grid(np.full((64, 64, 3), 0.5, np.float32), rng, pitch=4.0, depth=0.3)
    assert np.allclose(grid[:, :60], grid[:, 4:64], atol=1e-4)
    replayed, screen = spoof.render_replay(face, rng)
    assert screen in {"phone", "tablet", "laptop", "monitor"}
    assert replayed[..., 2].mean() / replayed[..., 0].mean() > face[..., 2].mean() / face[..., 0].mean()


def test_domains_differ_as_cameras_do():
    face = live_faces()[1][1][:224, :224]
    decoded = []
    for d in spoof.CAPTURE_DOMAINS:
        data = d.capture(face, np.random.default_rng(0))
        assert data[:2] == b"\xff\xd8"  # a JPEG file
        decoded.append(np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32))
    means = [x.mean(axis=(0, 1)) for x in decoded]
    assert min(np.abs(means[i] - means[j]).max() for i in range(4) for j in range(i + 1, 4)) > 1.0


def test_write_sample_loads_and_resumes(tmp_path):
    import datasets

    write_sample(tmp_path / "s")
    write_sample(tmp_path / "s")  # a second run adds nothing
    loaded = datasets.load_dataset(str(tmp_path / "s"))
    assert {k: len(v) for k, v in loaded.items()} == {k: len(v) for k, v in build_sample(0).items()}
    card = (tmp_path / "s" / "README.md").read_text()
    assert "SYNTHETIC" in card and "| train | 168 |" in card


def _features(img: np.ndarray) -> list[float]:
    sat = img.max(axis=2) - img.min(axis=2)
    lap = img.mean(axis=2)
    lap = lap[1:-1, 1:-1] * 4 - lap[:-2, 1:-1] - lap[2:, 1:-1] - lap[1:-1, :-2] - lap[1:-1, 2:]
    return [*img.mean(axis=(0, 1)), *img.std(axis=(0, 1)), float(sat.mean()), float(lap.std()),
            _high_frequency_energy(img)]


def test_sample_carries_a_learnable_live_versus_attack_signal():
    # The sample is only useful if live faces and attacks differ in learnable ways across subjects:
    # a linear model on simple image statistics, fit on train subjects, must rank held-out subjects well.
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    ds = build_sample(0)
    x = {k: np.array([_features(_pixels(r)) for r in ds[k]]) for k in ds}
    y = {k: np.array(ds[k]["label"]) for k in ds}
    scaler = StandardScaler().fit(x["train"])
    clf = LogisticRegression(max_iter=1000).fit(scaler.transform(x["train"]), y["train"])
    auc = roc_auc_score(y["test"], clf.predict_proba(scaler.transform(x["test"]))[:, 1])
    assert auc > 0.8, auc


def test_sample_files_round_trip_through_scf_ingest(tmp_path):
    # The sample written as a user holds data (JPEGs + manifest) and read back by `scf ingest --source csv`
    # with --source-name gives the benchmark rows of that domain: labels, attack types, videos, splits.
    from click.testing import CliRunner

    from scf.cli import main

    folders = write_sample_files(tmp_path / "files")
    assert [f.name for f in folders] == list(SAMPLE_SOURCES)
    domain = folders[1]
    result = CliRunner().invoke(main, [
        "ingest", "--source", "csv", "--root", str(domain), "--list", str(domain / "manifest.csv"),
        "--source-name", domain.name, "--config", domain.name, "--out", str(tmp_path / "bench"),
        "--no-detect", "--no-progress"])
    assert result.exit_code == 0, result.output
    got = schema.load_table(str(tmp_path / "bench"))
    want = [r for r in sample_rows(0) if r["source"] == domain.name]
    for split in ("train", "test"):
        rows = got[split].remove_columns("image").to_list()
        keys = ("label", "attack_type", "subject_id", "video_id", "source", "split", "frame_index")  # review 5 #17
        assert sorted(tuple(r[k] for k in keys) for r in rows) == sorted(
            tuple(r[k] for k in keys) for r in want if r["split"] == split)
