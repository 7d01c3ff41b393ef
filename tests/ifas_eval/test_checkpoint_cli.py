"""End to end: `ifas-eval --protocol sample` and `ifas-predict` on a tiny random checkpoint saved to disk.

The tiny model is random, so its numbers are noise; these tests check what the commands write and that the
numbers in the outputs agree with the score files they wrote.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from ifas_model.presets import build_model

    model, processor = build_model("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "tiny" / "final"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    assert (path / "model.safetensors").exists()
    return path


def test_sample_protocol_end_to_end_and_resume(tiny_checkpoint, tmp_path):
    from ifas_eval.cli import main

    out = tmp_path / "eval"
    args = ["--protocol", "sample", "--checkpoint", f"sample-domain-a={tiny_checkpoint}",
            "--checkpoint", f"sample-domain-b={tiny_checkpoint}", "--out", str(out), "--batch-size", "8",
            "--explain", "1", "--max-new-tokens", "6"]
    # one checkpoint on two leave-one-out settings: refused, then allowed with --shared-checkpoint (rows marked)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "--shared-checkpoint" in res.stderr.strip().splitlines()[-1]
    args.append("--shared-checkpoint")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "sample-domain-a" in res.stdout and "Average" in res.stdout and "FLIP/SSDG" in res.stdout
    assert "(seen domain)" in res.stdout and "Loading weights" not in res.output
    score_file = out / "scores" / "sample-domain-a" / "tiny-final" / "sample-domain-a.csv"
    with score_file.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30  # 5 test subjects x 3 videos x 2 frames
    assert {r["attack_type"] for r in rows} == {"live", "print", "replay"}
    doc = json.loads((out / "results.json").read_text())
    assert {(r["setting"], r["test_set"]) for r in doc["results"]} == {("sample-domain-a", "sample-domain-a"),
                                                                       ("sample-domain-b", "sample-domain-b")}
    # the table's numbers are those of the score file under the FLIP/SSDG convention
    from ifas_model.metrics import flip_metrics

    m = flip_metrics([float(r["score"]) for r in rows], [int(r["label"]) for r in rows],
                     [r["video_id"] for r in rows])
    res_a = next(r for r in doc["results"] if r["setting"] == "sample-domain-a")
    assert res_a["hter"] == pytest.approx(m["hter"]) and res_a["auc"] == pytest.approx(m["auc"])
    assert res_a["n_real"] == 5 and res_a["n_fake"] == 10
    for f in ("results.md", "results.csv", "run.json", "report/index.html", "report/attack_types.md"):
        assert (out / f).stat().st_size > 0, f
    assert json.loads((out / "run.json").read_text())["batch_size"] == 8
    assert list((out / "report").glob("roc_*.png")) and list((out / "report").glob("det_*.png"))
    page = (out / "report" / "index.html").read_text()
    assert "Generated explanations" in page and len(list((out / "report" / "images").glob("*.jpg"))) >= 2

    # resume: a finished file is reused; a torn partial file continues from its last complete row
    before = score_file.read_text()
    partial = score_file.with_name(score_file.name + ".partial")
    lines = before.splitlines(keepends=True)
    partial.write_text("".join(lines[:11]) + lines[11][:7])  # header + 10 rows + half a row
    score_file.unlink()
    res = CliRunner().invoke(main, args + ["--no-report", "--setting", "sample-domain-a"])
    assert res.exit_code == 0, res.output
    after = score_file.read_text().splitlines()
    assert len(after) == 31 and after[:11] == before.splitlines()[:11]
    assert np.allclose([float(line.split(",")[2]) for line in after[1:]],
                       [float(line.split(",")[2]) for line in before.splitlines()[1:]], atol=1e-5)


def test_seeds_give_mean_and_std(tiny_checkpoint, tmp_path):
    from ifas_eval.cli import main

    out = tmp_path / "eval"
    res = CliRunner().invoke(main, ["--protocol", "sample", "--setting", "sample-domain-c", "--checkpoint",
                                    str(tiny_checkpoint), "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                                    "--no-report", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["seed_index"] for r in doc["results"]] == [0, 1]
    row = doc["table"]["rows"][0]
    assert row["n_checkpoints"] == 2 and row["HTER (%)"]["std"] == pytest.approx(0.0, abs=1e-9)


def test_data_folder_of_per_source_datasets(tiny_checkpoint, tmp_path):
    """--data PARENT whose subfolders are dataset folders (scf ingest --config-name layout)."""
    import shutil

    from ifas_eval.cli import main
    from scf.sample import write_sample

    write_sample(tmp_path / "bench" / "sample")
    (tmp_path / "bench" / "README.md").write_text("# configs\n")
    # copies a failed push left behind (scf.hub stages .NAME.hub-upload; older versions NAME.hub-upload): not sources
    for staged in (".sample.hub-upload", "sample.hub-upload"):
        shutil.copytree(tmp_path / "bench" / "sample", tmp_path / "bench" / staged)
    from ifas_eval.protocols import load_protocol
    from ifas_eval.scoring import load_benchmark

    loaded = load_benchmark(str(tmp_path / "bench"), load_protocol("sample"))
    assert [name for name, _ in loaded.tables] == [str(tmp_path / "bench" / "sample")]
    out = tmp_path / "eval"
    res = CliRunner().invoke(main, ["--protocol", "sample", "--setting", "sample-domain-d", "--checkpoint",
                                    str(tiny_checkpoint), "--data", str(tmp_path / "bench"), "--out", str(out),
                                    "--no-report", "--json"])
    assert res.exit_code == 0, res.output
    (result,) = json.loads(res.stdout)["results"]
    assert (result["test_set"], result["n_real"], result["n_fake"]) == ("sample-domain-d", 5, 10)
    res = CliRunner().invoke(main, ["--protocol", "one-to-eleven", "--checkpoint", str(tiny_checkpoint),
                                    "--data", str(tmp_path / "bench" / "sample"), "--out", str(out)])
    assert res.exit_code != 0
    assert "test set 'MSU-MFSD': no rows of MSU-MFSD [test]" in res.stderr.strip().splitlines()[-1]


def test_checkpoint_errors(tiny_checkpoint, tmp_path):
    from ifas_eval.cli import main

    out = ["--out", str(tmp_path / "eval")]  # never the default eval-<protocol> in the working directory
    res = CliRunner().invoke(main, ["--protocol", "sample", "--checkpoint", f"nope={tiny_checkpoint}", *out])
    assert res.exit_code != 0 and "has no setting 'nope'" in res.stderr
    res = CliRunner().invoke(main, ["--protocol", "mcio", "--checkpoint", f"M={tiny_checkpoint}", *out])
    assert res.exit_code != 0 and "needs --data" in res.stderr
    res = CliRunner().invoke(main, ["--protocol", "mcio", "--checkpoint", f"M={tiny_checkpoint}", "--dataset",
                                    str(tmp_path / "missing"), *out])
    assert res.exit_code != 0
    last = res.stderr.strip().splitlines()[-1]  # log lines (warnings) may precede the one-line error
    assert last.startswith("Error: dataset not found") and "missing" in last
    assert not (tmp_path / "eval").exists()  # nothing written for a run whose inputs were not found


def test_a_mistyped_data_path_leaves_the_finished_run_json_alone(tiny_checkpoint, tmp_path, monkeypatch):
    """Review 11 #4: run.json was written before --data was checked, so a rerun with a typo overwrote the
    run.json of the finished evaluation beside its results.json. It is written once the inputs are found; and
    it records the software versions (provenance only: a rerun under other versions reuses the scores)."""
    from ifas_eval.cli import main
    from scf.sample import write_sample

    write_sample(tmp_path / "bench" / "sample")
    out = tmp_path / "eval"
    args = ["--protocol", "sample", "--setting", "sample-domain-a", "--checkpoint",
            f"sample-domain-a={tiny_checkpoint}", "--out", str(out), "--no-report", "--batch-size", "16"]
    res = CliRunner().invoke(main, [*args, "--data", str(tmp_path / "bench")])
    assert res.exit_code == 0, res.output
    finished = (out / "run.json").read_text()
    run, results = json.loads(finished), json.loads((out / "results.json").read_text())
    from scf.schema import software_versions

    assert run["versions"] == software_versions() == results["versions"]
    assert run["versions"]["ifas-eval"] == "0.1.0" and "torch" in run["versions"]

    res = CliRunner().invoke(main, [*args, "--data", str(tmp_path / "bnech")])
    assert res.exit_code == 1 and res.stderr.strip().splitlines()[-1].startswith("Error: dataset not found")
    assert (out / "run.json").read_text() == finished

    # other versions: the score files are reused all the same (nothing is scored), and the new versions recorded
    import scf.schema

    def no_scoring(*a, **kw):
        raise AssertionError("scored again only because the versions changed")

    monkeypatch.setattr(scf.schema, "software_versions", lambda extra=(): {"python": "3.10.0", "torch": "9.9"})
    import ifas_eval.scoring as scoring

    monkeypatch.setattr(scoring, "_prepared_batches", no_scoring)  # the images of a test set to score
    res = CliRunner().invoke(main, [*args, "--data", str(tmp_path / "bench")])
    assert res.exit_code == 0, res.output
    assert "reusing score files" in " ".join(res.stderr.split())
    assert json.loads((out / "run.json").read_text())["versions"] == {"python": "3.10.0", "torch": "9.9"}
    assert json.loads((out / "results.json").read_text())["results"] == results["results"]


def test_version_of_each_command():
    from ifas_eval.cli import demo, main, predict

    for command, name in ((main, "ifas-eval"), (predict, "ifas-predict"), (demo, "ifas-demo")):
        res = CliRunner().invoke(command, ["--version"])
        assert res.exit_code == 0 and res.output == f"{name} (ifas-eval) 0.1.0\n"


def test_a_pickled_checkpoint_is_refused_not_unpickled(tiny_checkpoint, tmp_path):
    # Weights load from safetensors only: a checkpoint holding a pickle (pytorch_model.bin) is refused with a
    # one-line error, and the pickle is never opened (it would run code on load).
    import shutil

    from ifas_eval.cli import predict

    ckpt = tmp_path / "pickled"
    shutil.copytree(tiny_checkpoint, ckpt)
    (ckpt / "model.safetensors").unlink()
    (ckpt / "pytorch_model.bin").write_bytes(b"not to be unpickled")
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(image)
    res = CliRunner().invoke(predict, [str(image), "--checkpoint", str(ckpt)])
    assert res.exit_code == 1 and res.stdout == ""
    # review 10 #8: one line that says why and how to convert (was "Error: Error no file named model.safetensors")
    assert res.stderr == (f"Error: checkpoint {ckpt}: weights only as a pickle (pytorch_model.bin), and pickled "
                          "weights are never loaded (unpickling can run code); convert them once, where you trust "
                          "the file: IFASForConditionalGeneration.from_pretrained(folder, use_safetensors=False)"
                          ".save_pretrained(folder, safe_serialization=True)\n")
    from ifas_eval.cli import main

    res = CliRunner().invoke(main, ["--protocol", "sample", "--setting", "sample-domain-a", "--checkpoint",
                                    f"sample-domain-a={ckpt}", "--out", str(tmp_path / "eval")])
    assert res.exit_code == 1 and "pickled weights are never loaded" in res.stderr.strip().splitlines()[-1]
    (ckpt / "pytorch_model.bin").unlink()
    res = CliRunner().invoke(predict, [str(image), "--checkpoint", str(ckpt)])
    assert res.exit_code == 1 and res.stderr.endswith("no model.safetensors: the weights are missing "
                                                      "(save_pretrained writes them)\n")


_EVIL = """import pathlib
pathlib.Path({marker!r}).write_text("checkpoint code ran")
from transformers import PreTrainedTokenizerFast
class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


@pytest.mark.parametrize("where", ["tokenizer_config.json", "config.json", "preprocessor_config.json",
                                   "processor_config.json", "code only"])
def test_a_checkpoint_with_its_own_code_is_refused_and_nothing_is_imported(tiny_checkpoint, tmp_path, where):
    """Review 10 #1: a checkpoint whose tokenizer_config.json names a class of its own (auto_map) made
    transformers ask "Do you wish to run the custom code? [y/N]" on stdin, and `echo y | ifas-predict` imported
    the checkpoint's evil.py. Such a folder (an auto_map in any of the configs transformers reads, or *.py
    files) is refused in one line, before anything loads, by ifas-predict, ifas-eval and ifas-demo."""
    import shutil
    import sys

    from PIL import Image

    from ifas_eval.cli import demo, main, predict

    ckpt = tmp_path / "ck_automap"
    shutil.copytree(tiny_checkpoint, ckpt)
    marker = tmp_path / "PWNED"
    (ckpt / "evil.py").write_text(_EVIL.format(marker=str(marker)))
    if where != "code only":
        file = ckpt / where
        config = json.loads(file.read_text()) if file.exists() else {}
        config["auto_map"] = {"AutoTokenizer": [None, "evil.EvilTokenizer"], "AutoConfig": "evil.EvilConfig"}
        file.write_text(json.dumps(config))
    image = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(image)
    from ifas_model._loading import NEVER_RUN as never_run
    results = [
        CliRunner().invoke(predict, [str(image), "--checkpoint", str(ckpt), "--no-face-detection"], input="y\n"),
        CliRunner().invoke(main, ["--protocol", "sample", "--setting", "sample-domain-a", "--checkpoint",
                                  f"sample-domain-a={ckpt}", "--out", str(tmp_path / "eval")], input="y\n"),
        CliRunner().invoke(demo, ["--checkpoint", str(ckpt)], input="y\n"),
    ]
    for res in results:
        assert res.exit_code == 1 and res.stdout == ""
        (line,) = res.stderr.strip().splitlines()
        detail = f"{where} has an auto_map" if where != "code only" else "the folder ships Python code (evil.py)"
        assert line.startswith(f"Error: checkpoint {str(ckpt)!r}: {detail}") and never_run in line, line
        assert "trust_remote_code=True" not in line and "[y/N]" not in res.output
    assert not marker.exists()
    assert not [name for name in sys.modules if "evil" in name]
    assert not (tmp_path / "eval").exists()


def test_predict_images_folder_video_and_errors(tiny_checkpoint, tmp_path):
    import cv2
    import skimage.data
    from PIL import Image

    from ifas_eval.cli import predict

    face = skimage.data.astronaut()
    Image.fromarray(face).save(tmp_path / "astronaut.png")
    folder = tmp_path / "folder"
    folder.mkdir()
    Image.fromarray(face[:256, :256]).save(folder / "crop.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    for _ in range(12):
        writer.write(cv2.cvtColor(np.ascontiguousarray(face[:256, 128:384]), cv2.COLOR_RGB2BGR))
    writer.release()
    res = CliRunner().invoke(predict, [str(tmp_path / "astronaut.png"), str(folder), str(tmp_path / "broken.jpg"),
                                       str(video), "--checkpoint", str(tiny_checkpoint), "--threshold", "0.3",
                                       "--max-new-tokens", "5", "--normalize", "yes_no"])
    assert res.exit_code == 1, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [line["input"].rsplit("/", 1)[-1] for line in lines] == ["astronaut.png", "crop.jpg", "broken.jpg",
                                                                     "clip.avi"]
    ok = [line for line in lines if "error" not in line]
    assert len(ok) == 3
    for line in ok:
        assert 0.0 <= line["p_real"] <= 1.0 and line["threshold"] == 0.3 and line["normalize"] == "yes_no"
        assert line["judgment"] == ("real" if line["p_real"] >= 0.3 else "fake")
        assert isinstance(line["explanation"], str)
    assert lines[0]["face_box"] is not None  # the astronaut's face is found by the Haar cascade
    assert [f["index"] for f in lines[3]["frames"]] == [6, 11]  # FLIP's frames 6 and 6 + 12 // 2 (clamped)
    assert "error" in lines[2] and "broken.jpg" in lines[2]["error"]
    assert "1 input(s) could not be processed" in res.stderr


def test_predict_preset_tiny_warns_loudly(tmp_path):
    import skimage.data
    from PIL import Image

    from ifas_eval.cli import predict

    Image.fromarray(skimage.data.astronaut()).save(tmp_path / "a.png")
    res = CliRunner().invoke(predict, [str(tmp_path / "a.png"), "--preset", "tiny", "--max-new-tokens", "3"])
    assert res.exit_code == 0, res.output
    assert "RANDOM, UNTRAINED" in res.stderr
    assert json.loads(res.stdout.strip())["judgment"] in ("real", "fake")
    res = CliRunner().invoke(predict, [str(tmp_path / "a.png")])
    assert res.exit_code != 0 and "exactly one of --checkpoint" in res.stderr


def test_default_batch_size_is_32_on_cpu_and_256_on_a_gpu(tiny_checkpoint, tmp_path, monkeypatch):
    """Without --batch-size: 32 images per forward pass on CPU (recorded in run.json), 256 on a GPU."""
    from click.testing import CliRunner

    from ifas_eval.cli import main

    out = tmp_path / "eval"
    res = CliRunner().invoke(main, ["--protocol", "sample", "--setting", "sample-domain-a", "--checkpoint",
                                    f"sample-domain-a={tiny_checkpoint}", "--out", str(out), "--no-report",
                                    "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "run.json").read_text())["batch_size"] == 32

    import ifas_eval.runner as runner
    import ifas_eval.scoring as scoring

    seen = {}

    def fake_evaluate(protocol, plan, **kw):
        seen.update(kw)
        raise SystemExit(0)  # stop before any model would load on the (absent) GPU

    monkeypatch.setattr(scoring, "pick_device", lambda device="auto", **kw: "cuda")
    monkeypatch.setattr(runner, "evaluate_protocol", fake_evaluate)
    CliRunner().invoke(main, ["--protocol", "sample", "--setting", "sample-domain-a", "--checkpoint",
                              f"sample-domain-a={tiny_checkpoint}", "--out", str(tmp_path / "gpu"), "--no-report"])
    assert seen["batch_size"] == 256


def test_python_judge_gives_the_ifas_predict_line(tiny_checkpoint, tmp_path):
    """`ifas_eval.predict.judge` (the documented one-call Python API for a raw photo) returns what ifas-predict
    prints for the same file: same face crop, p_real, judgment and explanation; and `score_images` on that
    face crop (not on the raw photo) gives the same p_real."""
    import cv2
    import skimage.data
    from PIL import Image

    from ifas_eval.cli import predict
    from ifas_eval.predict import face_crop, judge
    from ifas_eval.scoring import load_checkpoint
    from ifas_model.inference import score_images

    face = skimage.data.astronaut()
    photo = tmp_path / "astronaut.png"
    Image.fromarray(face).save(photo)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    for _ in range(8):
        writer.write(cv2.cvtColor(np.ascontiguousarray(face[:256, 128:384]), cv2.COLOR_RGB2BGR))
    writer.release()
    args = ["--checkpoint", str(tiny_checkpoint), "--threshold", "0.2", "--max-new-tokens", "4"]
    res = CliRunner().invoke(predict, [str(photo), str(video), *args])
    assert res.exit_code == 0, res.output
    cli_photo, cli_video = (json.loads(line) for line in res.stdout.splitlines())

    # best_frame is the video's frame number (an "index" of "frames"), and face_box/answer are that frame's
    assert [f["index"] for f in cli_video["frames"]] == [6, 7]
    shown = next(f for f in cli_video["frames"] if f["index"] == cli_video["best_frame"])
    assert (shown["face_box"], shown["answer"], shown["explanation"]) == (
        cli_video["face_box"], cli_video["answer"], cli_video["explanation"])
    assert "best_frame" not in cli_photo and cli_photo["normalize"] == "vocab"

    model, processor = load_checkpoint(str(tiny_checkpoint))
    assert judge(model, processor, str(photo), threshold=0.2, max_new_tokens=4) == cli_photo
    assert judge(model, processor, video, threshold=0.2, max_new_tokens=4) == {**cli_video, "input": str(video)}
    # an in-memory photo (PIL or array) gives the same numbers, without "input"
    from_pil = judge(model, processor, Image.open(photo), threshold=0.2, max_new_tokens=4)
    assert from_pil == {k: v for k, v in cli_photo.items() if k != "input"}
    assert judge(model, processor, face, threshold=0.2, max_new_tokens=4) == from_pil
    # score_images expects the face crop, as the corpus holds it
    crop, box = face_crop(face)
    assert box == cli_photo["face_box"]
    assert float(score_images(model, processor, [crop])[0]) == pytest.approx(cli_photo["p_real"], abs=1e-6)
    with pytest.raises(TypeError, match="path, a PIL image or an RGB array"):
        judge(model, processor, 3)
    with pytest.raises(FileNotFoundError, match="no such file"):
        judge(model, processor, tmp_path / "missing.jpg")
    # review 7 #3/#4: a folder is named as such; a float array is refused instead of judged as a dark picture
    with pytest.raises(ValueError, match=r"a folder; judge\(\) takes one image or video .*expand_inputs"):
        judge(model, processor, photo.parent)
    with pytest.raises(ValueError, match="must be uint8 RGB.*got float64"):
        judge(model, processor, face / 255.0)
