"""The SCF pipeline end to end on a toy benchmark dataset: stages, files, resume, bad input, the CLI.

The general captioner of the pipeline test is a stand-in with known, keyword-bearing captions (a random tiny
BLIP-2 names no spoof medium, so D_S would be empty); everything after it (filter, fine-tuning of the tiny
BLIP-2, spoof-aware captioning with the saved C_S, corpus) runs for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scf.schema import QUESTION, VQA_COLUMNS

GENERAL = {  # attack type -> general caption of the stand-in C_G
    "live": "a man with a beard in an office",
    "print": "a man holding a printed paper photo",
    "replay": "a woman looking at a phone screen",
}


def toy_dataset(n: int = 2, attacks: tuple[str, ...] = ("live", "print", "replay")):
    import datasets
    from PIL import Image

    from scf.schema import benchmark_features

    rng = np.random.RandomState(0)
    out = {}
    for split in ("train", "test"):
        rows = []
        for attack in attacks:
            for i in range(n):
                rows.append({
                    "image": Image.fromarray(rng.randint(0, 255, (32, 32, 3), dtype=np.uint8)),
                    "label": 1 if attack == "live" else 0, "attack_type": attack, "attack_detail": "",
                    "source": "toy", "subject_id": str(i), "video_id": f"{attack}-{i}", "frame_index": 0,
                    "split": split, "path": f"{attack}/{i}.png",
                })
        out[split] = datasets.Dataset.from_list(rows, features=benchmark_features())
    return datasets.DatasetDict(out)


class KnownCaptioner:
    """Stand-in C_G: the caption of an image is fixed by the attack type its pixel seed encodes."""

    name = "known-general"

    def __init__(self, captions: list[str], fail_after: int | None = None) -> None:
        self.queue, self.fail_after, self.calls, self.seen = list(captions), fail_after, 0, 0

    def caption(self, images):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt  # a kill in the middle of the stage
        self.seen += len(images)
        out, self.queue = self.queue[: len(images)], self.queue[len(images) :]
        return out


def _config(out, **kw):
    from scf.captioning.captioner import DecodingConfig
    from scf.captioning.finetune import FinetuneConfig
    from scf.captioning.pipeline import CaptionRunConfig

    base = dict(out=out, captioner="tiny", decoding=DecodingConfig(max_new_tokens=4, min_new_tokens=1),
                finetune=FinetuneConfig(epochs=1, batch_size=2, learning_rate=1e-3, warmup_steps=0),
                batch_size=2, shard_size=2, show_progress=False)
    base.update(kw)
    return CaptionRunConfig(**base)


def _general_captions(ds, split_filter=lambda attack: True):
    return [GENERAL[a] for s in ds for a in ds[s]["attack_type"] if split_filter(a)]


@pytest.fixture(scope="module", autouse=True)
def fresh_datasets_cache(tmp_path_factory):
    """A private `datasets` cache: load_dataset of a local folder can return a stale cached copy of another
    folder with the same name and file names (seen with datasets 5.2), which would hide what this run wrote."""
    import datasets

    old = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = tmp_path_factory.mktemp("hf-datasets-cache")
    yield
    datasets.config.HF_DATASETS_CACHE = old


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    from scf.captioning.pipeline import CaptionPipeline

    ds = toy_dataset()
    out = tmp_path_factory.mktemp("scf") / "run"
    summary = CaptionPipeline(_config(out), dataset=ds, general_captioner=KnownCaptioner(_general_captions(ds))).run()
    return ds, out, summary


def test_pipeline_writes_every_stage_and_a_valid_corpus(pipeline_run):
    import datasets

    from scf.schema import load_table

    ds, out, summary = pipeline_run
    assert list(summary) == ["general", "filter", "finetune", "spoof", "corpus"]
    assert summary["general"]["captioned"] == 12 and summary["spoof"]["captioned"] == 8
    assert summary["filter"]["stats"] == {"print": {"kept": 2, "total": 2}, "replay": {"kept": 2, "total": 2}}
    d_s = [json.loads(line) for line in (out / "filter" / "d_s.jsonl").read_text().splitlines()]
    assert {r["split"] for r in d_s} == {"train"} and {r["keyword"] for r in d_s} == {"printed", "phone"}
    assert (out / "captioner" / "model.safetensors").exists()

    corpus = load_table(str(out / "corpus"), "vqa")  # validates every row against the VQA contract
    assert {s: len(d) for s, d in corpus.items()} == {"train": 6, "test": 6}
    assert tuple(corpus["train"].column_names) == VQA_COLUMNS
    plain = datasets.load_dataset(str(out / "corpus"))
    assert plain["train"].num_rows == 6
    rows = corpus["train"].remove_columns("image").to_list()
    assert [r["path"] for r in rows] == ds["train"]["path"]  # dataset order
    for r in rows:
        assert r["question"] == QUESTION
        assert r["caption_general"] == GENERAL[r["attack_type"]] and r["captioner_general"] == "tiny"
        if r["label"] == 1:
            assert r["judgment"] == "Yes" and r["caption"] == GENERAL["live"] and r["keyword"] == ""
            assert r["interpretation"] == "This is a man with a beard in an office"
        else:
            assert r["judgment"] == "No" and r["captioner"] == str(out / "captioner")
            assert r["keyword"] == {"print": "printed", "replay": "phone"}[r["attack_type"]]
        assert r["answer"] == f"{r['judgment']}. {r['interpretation']}" if r["interpretation"] else r["judgment"]
    assert np.array_equal(np.asarray(corpus["test"][0]["image"]), np.asarray(ds["test"][0]["image"]))

    card = (out / "corpus" / "README.md").read_text()
    assert "| print | 2 | 2 | 100.0 |" in card and "a woman looking at a phone screen" in card
    config = json.loads((out / "scf_caption_config.json").read_text())
    assert config["decoding"]["max_new_tokens"] == 4 and config["keywords"]["replay"][0] == "screen"
    assert json.loads((out / "corpus" / "scf_caption_config.json").read_text())["interpretation"] == "spoof"


def test_rerun_redoes_nothing_and_general_ablation_uses_t_f(pipeline_run):
    from scf.captioning.pipeline import CaptionPipeline, read_captions

    ds, out, _ = pipeline_run
    summary = CaptionPipeline(_config(out), dataset=ds, general_captioner=KnownCaptioner([])).run()
    assert summary["general"]["captioned"] == 0 and summary["spoof"]["captioned"] == 0
    assert summary["finetune"] == {"skipped": True}
    assert len(read_captions(out / "general")) == 12

    summary = CaptionPipeline(_config(out, interpretation="general"), dataset=ds).run()
    assert list(summary) == ["general", "corpus"]
    import datasets

    corpus = datasets.load_dataset(str(out / "corpus-general"))["train"].remove_columns("image")
    fakes = [r for r in corpus.to_list() if r["label"] == 0]
    assert all(r["caption"] == r["caption_general"] and r["captioner"] == "tiny" for r in fakes)


def test_general_stage_resumes_without_losing_or_duplicating_rows(tmp_path):
    import pyarrow.parquet as pq

    from scf.captioning.pipeline import CaptionPipeline, read_captions

    ds = toy_dataset(n=3)
    captions = _general_captions(ds)
    first = KnownCaptioner(captions, fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        CaptionPipeline(_config(tmp_path, stage="general"), dataset=ds, general_captioner=first).run()
    done = read_captions(tmp_path / "general")
    assert len(done) == 6  # three batches of two, flushed when the run died

    second = KnownCaptioner(captions[6:])
    CaptionPipeline(_config(tmp_path, stage="general"), dataset=ds, general_captioner=second).run()
    assert second.seen == 12  # only what was missing
    keys = [k for p in (tmp_path / "general").glob("rank-*/data/*.parquet") for k in pq.read_table(p)["key"].to_pylist()]
    assert len(keys) == len(set(keys)) == 18


def test_filter_reports_types_that_matched_nothing(tmp_path):
    from scf.captioning.pipeline import CaptionPipeline, PipelineError

    ds = toy_dataset(n=1)
    dull = ["a man with a beard in an office"] * 6
    with pytest.raises(PipelineError) as info:
        CaptionPipeline(_config(tmp_path, split="fake"), dataset=ds, general_captioner=KnownCaptioner(dull)).run()
    msg = str(info.value)
    assert "D_S is empty" in msg and "print, replay matched nothing" in msg and "beard" in msg
    assert msg.endswith("rerun with --if-empty general")  # the way on without C_S is named


def test_if_empty_general_keeps_the_fakes_general_captions_with_honest_provenance(tmp_path):
    # The offline quick start's tiny random captioner names no spoof medium: with --if-empty general no C_S
    # is trained, the corpus is still written, and its fakes say they were captioned by C_G.
    from scf.captioning.pipeline import CaptionPipeline
    from scf.schema import load_table

    ds = toy_dataset(n=1)
    dull = ["a man with a beard in an office"] * sum(len(d) for d in ds.values())
    CaptionPipeline(_config(tmp_path, if_empty="general"), dataset=ds, general_captioner=KnownCaptioner(dull)).run()
    assert not (tmp_path / "captioner").exists()
    corpus = load_table(str(tmp_path / "corpus"), "vqa")["train"]
    fakes = [r for r in corpus.remove_columns("image") if r["label"] == 0]
    assert fakes and all(r["caption"] == r["caption_general"] == dull[0] for r in fakes)
    assert all(r["captioner"] == r["captioner_general"] == "tiny" and r["keyword"] == "" for r in fakes)


def test_bad_input_fails_before_any_model_is_loaded(tmp_path):
    from transformers import BertConfig

    from scf.captioning.captioner import CaptionerError
    from scf.captioning.pipeline import CaptionPipeline, PipelineError
    from scf.schema import SchemaError

    ds = toy_dataset(n=1)
    with pytest.raises(SchemaError, match="column 'attack_detail'"):
        CaptionPipeline(_config(tmp_path), dataset=ds.remove_columns("attack_detail"))

    BertConfig().save_pretrained(tmp_path / "bert")
    with pytest.raises(CaptionerError, match="is not BLIP-2: its config.json has model_type 'bert'"):
        CaptionPipeline(_config(tmp_path, captioner=str(tmp_path / "bert")), dataset=ds)
    with pytest.raises(CaptionerError, match="captioner folder not found"):
        CaptionPipeline(_config(tmp_path, captioner=str(tmp_path / "missing")), dataset=ds)

    only_replay = tmp_path / "k.yaml"
    only_replay.write_text("mode: replace\nkeywords:\n  replay: [screen]\n")
    with pytest.raises(PipelineError, match="attack type.s. print of the dataset have no keywords"):
        CaptionPipeline(_config(tmp_path, keywords_file=str(only_replay)), dataset=ds)

    with pytest.raises(PipelineError, match="no fake rows"):
        CaptionPipeline(_config(tmp_path, split="fake"), dataset=toy_dataset(n=1, attacks=("live",)))

    CaptionPipeline(_config(tmp_path / "a", stage="general"), dataset=ds, general_captioner=KnownCaptioner(["x"] * 6)).run()
    from scf.captioning.captioner import DecodingConfig
    from scf.captioning.finetune import FinetuneConfig

    with pytest.raises(PipelineError) as err:  # review 6 L3: the flag and both values, not two whole dicts
        CaptionPipeline(_config(tmp_path / "a", decoding=DecodingConfig(max_new_tokens=9, min_new_tokens=1),
                                finetune=FinetuneConfig(epochs=2, batch_size=2, learning_rate=1e-3, warmup_steps=0)),
                        dataset=ds)
    assert str(err.value) == (f"{tmp_path / 'a'} was produced with other settings: --max-new-tokens 4 there, 9 now; "
                              "--epochs 1 there, 2 now; use a new --out to keep both")
    # --checkpoint-every changes no caption and no weight: a resume may change it (e.g. after a crash)
    CaptionPipeline(_config(tmp_path / "a", stage="general", finetune=FinetuneConfig(
        epochs=1, batch_size=2, learning_rate=1e-3, warmup_steps=0, checkpoint_every=7)), dataset=ds).run()
    with pytest.raises(PipelineError, match="spoof-aware captions are missing"):
        CaptionPipeline(_config(tmp_path / "a", stage="corpus"), dataset=ds).run()

    # Hub ids compare as text (the local-folder case is in the CLI test)
    CaptionPipeline(_config(tmp_path / "hub", dataset="org/bench-a"), dataset=ds)
    CaptionPipeline(_config(tmp_path / "hub", dataset="org/bench-a"), dataset=ds)
    with pytest.raises(PipelineError, match=r"--dataset 'org/bench-a' there, 'org/bench-b' now"):
        CaptionPipeline(_config(tmp_path / "hub", dataset="org/bench-b"), dataset=ds)


def test_cli_tiny_preset_real_split_and_one_line_errors(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from scf.captioning.pipeline import read_captions
    from scf.cli import main

    ds = toy_dataset(n=1)
    ds.save_to_disk(str(tmp_path / "bench"))
    runner = CliRunner()
    args = ["caption", "--preset", "tiny", "--split", "real", "--out", str(tmp_path / "out"), "--max-new-tokens", "3",
            "--min-new-tokens", "1", "--no-progress"]
    result = runner.invoke(main, [*args, "--dataset", str(tmp_path / "bench"), "--lora-rank", "2"])
    assert result.exit_code == 0, result.output
    captions = read_captions(tmp_path / "out" / "general")
    assert sorted(captions) == ["test:toy:live/0.png#0", "train:toy:live/0.png#0"]  # the tiny BLIP-2's real path
    assert all(isinstance(c, str) for c in captions.values())
    assert "images/s" in result.output
    # --lora-rank is ifas-train's spelling of --lora-r
    assert json.loads((tmp_path / "out" / "scf_caption_config.json").read_text())["finetune"]["lora_r"] == 2

    # the same folder given relative resumes (nothing captioned again); another folder is refused
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, [*args, "--dataset", "bench", "--lora-rank", "2"])
    assert result.exit_code == 0, result.output
    assert "all 2 images already captioned" in result.output
    ds.save_to_disk(str(tmp_path / "bench-copy"))
    result = runner.invoke(main, [*args, "--dataset", "bench-copy", "--lora-rank", "2"])
    assert result.exit_code == 1 and "other settings: --dataset" in result.output and "bench-copy' now" in result.output

    result = runner.invoke(main, ["caption", "--dataset", str(tmp_path / "nowhere"), "--preset", "tiny",
                                  "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "dataset not found" in result.output and "Traceback" not in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("keywords:\n  printing: [paper]\n")
    result = runner.invoke(main, ["caption", "--keywords", str(bad), "--preset", "tiny", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "printing" in result.output
    bad.write_text("keywords:\n  print: [paper\n")  # broken YAML: one line with its position, not PyYAML's six
    result = runner.invoke(main, ["caption", "--keywords", str(bad), "--preset", "tiny", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert f"Error: {bad}: not valid YAML (line 3, column 1: expected ',' or ']'" in result.output
    # a Hub id that cannot be reached (offline here): one line, no traceback
    result = runner.invoke(main, ["caption", "--dataset", "org/no-such-corpus", "--preset", "tiny",
                                  "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "org/no-such-corpus" in result.output and "Traceback" not in result.output


def test_a_missing_local_dataset_is_named_before_the_hub_is_asked_for_the_captioner(tmp_path, monkeypatch):
    """Review 9 L4: a typo in a local --dataset is one line naming it, at once, not Hub retries for the default
    captioner that blame the Hub."""
    from click.testing import CliRunner

    from scf.captioning import pipeline
    from scf.cli import main

    def hub(*a, **kw):
        raise AssertionError("the captioner was looked up first")

    monkeypatch.setattr(pipeline, "check_blip2", hub)
    monkeypatch.chdir(tmp_path)
    for dataset in (str(tmp_path / "benchmrk"), "./benchmrk", "benchmrk", "runs/qs/benchmrk"):
        result = CliRunner().invoke(main, ["caption", "--dataset", dataset, "--out", "out"])
        assert result.exit_code == 1
        assert result.output == f"Error: dataset not found: {dataset} (not a local folder, nor a Hub id org/name)\n"
    assert not (tmp_path / "out").exists()


def test_cli_device_captioner_and_help_errors_are_one_line(tmp_path, monkeypatch):
    """Items 4, 17, 20: bad --device values, a --captioner folder of another architecture, the help text."""
    import torch
    from click.testing import CliRunner

    from scf.cli import main

    runner = CliRunner()
    base = ["caption", "--preset", "tiny", "--out", str(tmp_path / "out"), "--dataset", str(tmp_path / "absent")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in (("gpu0", "--device gpu0: not a torch device (use auto, cpu, cuda, cuda:N or mps)"),
                            ("cuda", "--device cuda: no CUDA GPU is available (use cpu or auto)"),
                            ("meta", "--device meta: SCF runs on cpu, cuda or mps, not 'meta'")):
        result = runner.invoke(main, [*base, "--device", device])
        # checked before the (absent) dataset is looked at, in one line
        assert result.exit_code == 1 and result.output == f"Error: {message}\n", result.output
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    result = runner.invoke(main, [*base, "--device", "cuda:2"])
    assert result.output == "Error: --device cuda:2: this machine has 2 CUDA GPU(s) (cuda:0 to cuda:1)\n"
    monkeypatch.undo()

    ifas = tmp_path / "ifas-checkpoint"  # an I-FAS folder: a model_type transformers does not know
    ifas.mkdir()
    (ifas / "config.json").write_text(json.dumps({"model_type": "ifas", "architectures": ["IFASModel"]}))
    toy_dataset(n=1).save_to_disk(str(tmp_path / "bench"))
    result = runner.invoke(main, ["caption", "--captioner", str(ifas), "--dataset", str(tmp_path / "bench"),
                                  "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert f"captioner '{ifas}' is not BLIP-2: its config.json has model_type 'ifas'" in result.output
    (ifas / "config.json").unlink()
    result = runner.invoke(main, ["caption", "--captioner", str(ifas), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "has no config.json" in result.output
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["caption", "--captioner", "runs/x/captioner", "--out", str(tmp_path / "out")])
    assert result.output == "Error: captioner folder not found: runs/x/captioner\n"  # not a Hub repo-id message

    result = runner.invoke(main, ["caption", "--help"])
    assert result.exit_code == 0 and "%%" not in result.output and "10% of all" in result.output
    assert "--lora-r, --lora-rank" in result.output


def test_default_batch_size_is_256_on_a_gpu_and_32_on_cpu(tmp_path, monkeypatch):
    """`scf caption` without --batch-size: the benchmark's batch on a GPU, 32 on CPU (recorded in the run config)."""
    import torch
    from click.testing import CliRunner

    from scf.captioning.captioner import default_batch_size
    from scf.cli import main

    assert default_batch_size("cpu") == 32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_batch_size(None) == 32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert default_batch_size(None) == 256 and default_batch_size("cuda") == 256
    assert default_batch_size("cpu") == 32
    from scf.captioning.pipeline import CaptionRunConfig, PipelineError

    # the Python API resolves batch_size=None the same way
    assert CaptionRunConfig(out=tmp_path / "api").batch_size == 256
    assert CaptionRunConfig(out=tmp_path / "api", device="cpu").batch_size == 32
    assert CaptionRunConfig(out=tmp_path / "api", batch_size=7).batch_size == 7
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert CaptionRunConfig(out=tmp_path / "api").batch_size == 32
    with pytest.raises(PipelineError, match="--device cuda: no CUDA GPU is available"):
        CaptionRunConfig(out=tmp_path / "api", device="cuda")
    monkeypatch.undo()
    toy_dataset(n=1, attacks=("live",)).save_to_disk(str(tmp_path / "bench"))
    result = CliRunner().invoke(main, ["caption", "--preset", "tiny", "--dataset", str(tmp_path / "bench"),
                                       "--out", str(tmp_path / "out"), "--split", "real", "--device", "cpu",
                                       "--max-new-tokens", "2", "--min-new-tokens", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    config_file = next((tmp_path / "out").glob("*config*.json"))
    record = json.loads(config_file.read_text())
    assert record["batch_size"] == 32

    # a run folder of an older scf, whose recipe lacked fields added since, still resumes
    record["finetune"].pop("precision")
    config_file.write_text(json.dumps(record))
    again = CliRunner().invoke(main, ["caption", "--preset", "tiny", "--dataset", str(tmp_path / "bench"),
                                      "--out", str(tmp_path / "out"), "--split", "real", "--device", "cpu",
                                      "--max-new-tokens", "2", "--min-new-tokens", "1", "--no-progress"])
    assert again.exit_code == 0, again.output


def test_corrupt_image_stops_with_its_row_and_keeps_what_was_captioned(tmp_path):
    """A corrupt image in the dataset names dataset, split, row and path; the job then resumes."""
    import datasets
    from click.testing import CliRunner

    from scf.captioning.pipeline import read_captions
    from scf.cli import main
    from scf.schema import benchmark_features

    good = toy_dataset(n=2, attacks=("live",))
    rows = good["test"].to_list()
    rows[1]["image"] = {"bytes": b"garbage", "path": None}
    broken = datasets.DatasetDict({"train": good["train"],
                                   "test": datasets.Dataset.from_list(rows, features=benchmark_features())})
    broken.save_to_disk(str(tmp_path / "bench"))
    args = ["caption", "--dataset", str(tmp_path / "bench"), "--preset", "tiny", "--split", "real", "--out",
            str(tmp_path / "out"), "--max-new-tokens", "2", "--min-new-tokens", "1", "--batch-size", "2", "--no-progress"]
    runner = CliRunner()
    result = runner.invoke(main, args)
    assert result.exit_code == 1 and "Traceback" not in result.output and "BytesIO" not in result.output
    assert result.output.count("\n") == 1, result.output
    assert (f"Error: {tmp_path / 'bench'} [test] row 1 (path live/1.png): corrupt image (UnidentifiedImageError: "
            "cannot identify image file); fix or remove that row, then rerun: the 3 general captions written so far "
            "are kept") in result.output
    kept = read_captions(tmp_path / "out" / "general")
    assert sorted(kept) == ["test:toy:live/0.png#0", "train:toy:live/0.png#0", "train:toy:live/1.png#0"]

    good.save_to_disk(str(tmp_path / "bench"))  # the row repaired: the rerun captions only that row
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "captioned 1 images" in result.output and "3 done before" in result.output
    assert len(read_captions(tmp_path / "out" / "general")) == 4


def test_tiny_and_loaded_processors_use_pil_without_the_torchvision_warning(tmp_path):
    """The PIL image processor is named explicitly (built and loaded), so transformers does not warn
    that it substitutes it for the torchvision one; the pixels of a saved and reloaded captioner are the same."""
    import subprocess
    import sys

    code = f"""
import numpy as np, torch
from PIL import Image
from scf.presets import build_tiny_captioner
from scf.captioning.captioner import load_blip2
model, proc = build_tiny_captioner()
model.save_pretrained({str(tmp_path)!r}); proc.save_pretrained({str(tmp_path)!r})
_, loaded = load_blip2({str(tmp_path)!r}, device="cpu")
img = Image.fromarray(np.random.RandomState(0).randint(0, 255, (40, 30, 3), dtype=np.uint8))
a, b = proc(images=[img], return_tensors="pt")["pixel_values"], loaded(images=[img], return_tensors="pt")["pixel_values"]
print(type(proc.image_processor).__name__, type(loaded.image_processor).__name__, torch.equal(a, b))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["BlipImageProcessorPil", "BlipImageProcessorPil", "True"]
    assert "torchvision" not in proc.stderr, proc.stderr


def test_corpus_push_uploads_a_copy_without_local_paths(pipeline_run, monkeypatch, tmp_path):
    """Review 10 #6: the pushed card and scf_caption_config.json name no local path; the local ones still do
    (the resume compares the dataset), and the run still resumes."""
    import huggingface_hub

    from scf.captioning.pipeline import CaptionPipeline

    ds, out, _ = pipeline_run
    bench = tmp_path / "home" / "ana" / "bench"  # a local --dataset, recorded in the config and the card
    ds.save_to_disk(str(bench))
    run = tmp_path / "run"
    import shutil

    shutil.copytree(out, run)
    calls, uploaded = [], {}

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw["repo_type"], kw["private"]))
            return f"https://huggingface.co/datasets/{repo_id}"

        def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
            calls.append(("upload", folder_path, repo_id, repo_type))
            folder = Path(folder_path)
            uploaded.update({str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()})

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    record = json.loads((run / "scf_caption_config.json").read_text())
    record["dataset"] = str(bench)  # as a run with --dataset <that folder> records it
    (run / "scf_caption_config.json").write_text(json.dumps(record))
    CaptionPipeline(_config(run, stage="corpus", push_to_hub="me/corpus", dataset=str(bench)), dataset=ds).run()
    stage = run / ".corpus.hub-upload"
    assert calls == [("create", "me/corpus", "dataset", True), ("upload", str(stage), "me/corpus", "dataset")]
    assert not stage.exists()  # removed after the upload
    local = {str(p.relative_to(run / "corpus")) for p in (run / "corpus").rglob("*") if p.is_file()}
    assert set(uploaded) == local and any(k.startswith("data/") for k in uploaded)
    for name in ("README.md", "scf_caption_config.json"):
        text = uploaded[name].decode()
        assert str(tmp_path) not in text, name
        assert "<local>/bench" in text and "<local>/run/captioner" in text, name
        assert str(bench) in (run / "corpus" / name).read_text()  # the local copy keeps the path
    assert json.loads(uploaded["scf_caption_config.json"])["dataset"] == "<local>/bench"
    for name, data in uploaded.items():
        if name.startswith("data/"):
            assert data == (run / "corpus" / name).read_bytes()  # the shards as they are


@pytest.mark.slow
def test_two_processes_share_the_work_and_rank0_merges(tmp_path):
    """torchrun, 2 processes, gloo on CPU: the fakes' general captions are written first (keyword-bearing), the
    rest (reals' captions, filter, fine-tuning on rank 0, spoof-aware captions on both ranks, corpus) is real."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import datasets
    import pyarrow.parquet as pq

    from scf.captioning.pipeline import read_captions, row_key, write_captions

    ds = toy_dataset(n=2)
    ds.save_to_disk(str(tmp_path / "bench"))
    out = tmp_path / "out"
    for split in ds:
        rows = ds[split].remove_columns("image").to_list()
        write_captions(out / "general", split, [(row_key(split, r["source"], r["path"], r["frame_index"]),
                                                 GENERAL[r["attack_type"]]) for r in rows if r["label"] == 0])
    bindir = Path(sys.executable).parent
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "cache"))
    cmd = [str(bindir / "torchrun"), "--standalone", "--nproc_per_node", "2", "--no-python", str(bindir / "scf"),
           "caption", "--dataset", str(tmp_path / "bench"), "--preset", "tiny", "--out", str(out), "--batch-size", "1",
           "--shard-size", "1", "--max-new-tokens", "3", "--min-new-tokens", "1", "--epochs", "1",
           "--ft-batch-size", "2", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def keys(stage: str, rank: int) -> list[str]:
        return [k for p in sorted((out / stage / f"rank-{rank:05d}" / "data").glob("*.parquet"))
                for k in pq.read_table(p)["key"].to_pylist()]

    reals = {row_key(s, "toy", p, 0) for s in ds for p, a in zip(ds[s]["path"], ds[s]["attack_type"], strict=True)
             if a == "live"}
    fakes = {row_key(s, "toy", p, 0) for s in ds for p, a in zip(ds[s]["path"], ds[s]["attack_type"], strict=True)
             if a != "live"}
    real0, real1 = set(keys("general", 0)) & reals, set(keys("general", 1))
    assert real0 and real1 and not real0 & real1 and real0 | real1 == reals  # disjoint slices of the reals
    spoof0, spoof1 = keys("spoof", 0), keys("spoof", 1)
    assert len(spoof0) == len(spoof1) == 4 and set(spoof0) | set(spoof1) == fakes
    assert len(read_captions(out / "general")) == 12
    corpus = datasets.load_dataset(str(out / "corpus"), cache_dir=str(tmp_path / "cache2"))
    for split in ds:
        assert corpus[split]["path"] == ds[split]["path"]  # rank 0 merged in dataset order
    assert "images/s" in proc.stderr + proc.stdout


def test_finetune_exclude_sources_keeps_a_target_out_of_d_s_recorded_and_compared(tmp_path):
    """--finetune-exclude-sources leaves a source's fakes out of D_S (so out of C_S's fine-tuning)."""
    from click.testing import CliRunner

    from scf.captioning.pipeline import DS_FILE, CaptionPipeline, PipelineError
    from scf.cli import main

    ds = toy_dataset(n=2)
    ds = ds.map(lambda r: {"source": "MSU-MFSD" if r["subject_id"] == "0" else "OULU-NPU"})
    captions = _general_captions(ds, lambda a: a != "live")
    out = tmp_path / "strict"
    CaptionPipeline(_config(out, split="fake", stage="general"), dataset=ds,
                    general_captioner=KnownCaptioner(captions)).run()
    with pytest.raises(PipelineError, match=r"--finetune-exclude-sources: no rows of source 'MSU' in the dataset "
                                            r"\(sources there: MSU-MFSD, OULU-NPU\)"):
        CaptionPipeline(_config(out, split="fake", stage="filter", finetune_exclude_sources=("MSU",)), dataset=ds)
    with pytest.raises(PipelineError, match=r"--finetune-exclude-sources \[\] there, \['MSU-MFSD'\] now"):
        CaptionPipeline(_config(out, split="fake", stage="filter", finetune_exclude_sources=("MSU-MFSD",)),
                        dataset=ds)

    out = tmp_path / "strict2"
    CaptionPipeline(_config(out, split="fake", stage="general", finetune_exclude_sources=("MSU-MFSD",)), dataset=ds,
                    general_captioner=KnownCaptioner(captions)).run()
    CaptionPipeline(_config(out, split="fake", stage="filter", finetune_exclude_sources=("MSU-MFSD",)),
                    dataset=ds).run()
    kept = [json.loads(line) for line in (out / "filter" / DS_FILE).read_text().splitlines()]
    train = ds["train"]
    assert kept and {train[r["index"]]["source"] for r in kept} == {"OULU-NPU"}  # train fakes of OULU only
    assert len(kept) == 2  # print and replay of subject 1 (subject 0 is MSU-MFSD)
    record = json.loads((out / "scf_caption_config.json").read_text())
    assert record["finetune_exclude_sources"] == ["MSU-MFSD"]

    # everything excluded: one line, before any fine-tuning
    out = tmp_path / "none"
    both = ("MSU-MFSD", "OULU-NPU")
    CaptionPipeline(_config(out, split="fake", stage="general", finetune_exclude_sources=both), dataset=ds,
                    general_captioner=KnownCaptioner(captions)).run()
    with pytest.raises(PipelineError, match="no fake of split.s. train is left for D_S"):
        CaptionPipeline(_config(out, split="fake", stage="filter", finetune_exclude_sources=both), dataset=ds).run()

    # the CLI: an unknown source is one line, exit status 1
    folder = tmp_path / "bench"
    for split in ds:
        (folder / "data").mkdir(parents=True, exist_ok=True)
        ds[split].to_parquet(str(folder / "data" / f"{split}-00000.parquet"))
    res = CliRunner().invoke(main, ["caption", "--dataset", str(folder), "--out", str(tmp_path / "cli"), "--preset",
                                    "tiny", "--finetune-exclude-sources", "MSU-MFSD,Nope", "--no-progress"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == ("Error: --finetune-exclude-sources: no rows of source 'Nope' in "
                                                   "the dataset (sources there: MSU-MFSD, OULU-NPU)")


def test_c_s_is_never_reused_or_resumed_for_another_d_s(tmp_path):
    """A rerun whose D_S differs from the one C_S was fine-tuned on is refused, in one line (tiny C_S)."""
    import datasets
    from click.testing import CliRunner

    from scf.captioning.pipeline import D_S_FINGERPRINT_FILE, CaptionPipeline, PipelineError, d_s_fingerprint
    from scf.cli import main

    ds = toy_dataset(n=1)
    captions = _general_captions(ds, lambda a: a != "live")
    out = tmp_path / "run"
    # finetune_splits names no split of the dataset, so D_S takes the fakes of every split given
    cfg = _config(out, split="fake", finetune_splits=("validation",))
    CaptionPipeline(cfg, dataset=ds, general_captioner=KnownCaptioner(captions)).run()
    rows = [json.loads(line) for line in (out / "filter" / "d_s.jsonl").read_text().splitlines()]
    saved = json.loads((out / "captioner" / "scf_finetune.json").read_text())
    assert len(rows) == 4 and saved["d_s_fingerprint"] == d_s_fingerprint(rows) and saved["samples"] == 4
    assert saved["finetune_splits"] == ["validation"]
    assert CaptionPipeline(cfg, dataset=ds).run()["finetune"] == {"skipped": True}  # same D_S: C_S reused

    train_only = datasets.DatasetDict({"train": ds["train"]})  # now D_S holds the 2 train fakes only
    with pytest.raises(PipelineError) as err:
        CaptionPipeline(cfg, dataset=train_only, general_captioner=KnownCaptioner(captions[:2])).run()
    message = str(err.value)
    assert "\n" not in message and "was fine-tuned on another spoof-aware set D_S (4 samples then, 2 now" in message
    assert message.endswith("use a new --out to train C_S on this D_S")

    # an interrupted fine-tuning (checkpoints, no C_S yet) is not resumed on another D_S either
    (out / "captioner" / "scf_finetune.json").unlink()
    assert json.loads((out / "finetune" / D_S_FINGERPRINT_FILE).read_text())["samples"] == 4
    with pytest.raises(PipelineError, match=r"finetune was fine-tuned on another spoof-aware set D_S"):
        CaptionPipeline(cfg, dataset=train_only).run()

    # another --finetune-splits into the same --out: refused before any model is loaded (CLI, tiny preset)
    folder = tmp_path / "bench"
    (folder / "data").mkdir(parents=True)
    for split in ds:
        ds[split].to_parquet(str(folder / "data" / f"{split}-00000.parquet"))
    cli_out = str(tmp_path / "cli")
    base = ["caption", "--dataset", str(folder), "--out", cli_out, "--preset", "tiny", "--no-progress",
            "--max-new-tokens", "2", "--min-new-tokens", "1"]
    res = CliRunner().invoke(main, [*base, "--split", "real"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, [*base, "--split", "real", "--finetune-splits", "train,test"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == (
        f"Error: {cli_out} was produced with other settings: --finetune-splits ['train'] there, ['train', 'test'] "
        "now; use a new --out to keep both")


def test_keyword_suggestions_never_propose_another_types_keywords(tmp_path, caplog):
    """C_G captions every fake as a print: the replay hint must not propose "paper" or "photo" (print keywords)."""
    import logging

    from scf.captioning.keywords import load_keywords, suggest_keywords
    from scf.captioning.pipeline import CaptionPipeline

    k = load_keywords()
    captions = ["a man holding a paper photo in a kitchen", "a woman holding paper photos in a kitchen"]
    assert suggest_keywords(captions, 4) == ["paper", "kitchen", "photo", "photos"]  # no dictionary: frequencies
    assert suggest_keywords(captions, 4, keywords=k, attack_type="replay") == ["kitchen"]  # plurals dropped too
    assert suggest_keywords(captions, 2, keywords=k, attack_type="print") == ["paper", "kitchen"]

    ds = toy_dataset(n=1)
    with caplog.at_level(logging.WARNING, logger="scf.captioning.pipeline"):
        CaptionPipeline(_config(tmp_path, split="fake", stage="general"), dataset=ds,
                        general_captioner=KnownCaptioner(["a man holding a paper photo by a lamp"] * 4)).run()
        CaptionPipeline(_config(tmp_path, split="fake", stage="filter"), dataset=ds).run()
    hint = [r.getMessage() for r in caplog.records if "matched no keyword" in r.getMessage()]
    assert len(hint) == 1 and hint[0].endswith("Frequent words of their captions: replay: lamp")


def test_threaded_decoding_gives_the_batches_and_the_first_corrupt_row_in_order():
    """On a GPU `scf caption` decodes the next batches in threads; same images, and a corrupt row still ends
    its batch at that row."""
    import datasets

    from scf.captioning.pipeline import _decoded_batches, _Item
    from scf.schema import benchmark_features

    rows = toy_dataset(n=50, attacks=("live",))["test"].to_list()
    rows[45]["image"] = {"bytes": b"garbage", "path": None}
    ds = datasets.Dataset.from_list(rows, features=benchmark_features()).select_columns(["image"])
    items = [_Item(key=str(i), index=i, split="test", label=1, attack_type="live", path=str(i)) for i in range(len(ds))]
    jobs = [(ds, items[a:a + 40]) for a in range(0, len(items), 40)]
    plain = list(_decoded_batches(jobs, threads=0))
    threaded = list(_decoded_batches(jobs, threads=3))
    assert [len(imgs) for imgs, _, _ in threaded] == [len(imgs) for imgs, _, _ in plain] == [40, 5]
    for (a, fa, pa), (b, fb, pb) in zip(plain, threaded, strict=True):
        assert [im.tobytes() for im in a] == [im.tobytes() for im in b]
        assert (fa is None) == (fb is None) and pa is None and pb is None  # no captioner preprocessing asked
    assert threaded[1][1][0].index == 45


def test_preprocessing_in_the_prefetch_threads_gives_the_same_captions():
    """review24 H1: on a GPU the BLIP-2 preprocessing ran on the main thread, alternating with the GPU; the
    prefetch threads now run it (Blip2Captioner.prepare) and caption_prepared captions the pixels: the same
    greedy captions as caption(images), the corrupt-row batch included."""
    import datasets

    from scf.captioning.captioner import Blip2Captioner, DecodingConfig
    from scf.captioning.pipeline import _decoded_batches, _Item
    from scf.schema import benchmark_features

    rows = toy_dataset(n=12, attacks=("live",))["test"].to_list()
    rows[10]["image"] = {"bytes": b"garbage", "path": None}
    ds = datasets.Dataset.from_list(rows, features=benchmark_features()).select_columns(["image"])
    items = [_Item(key=str(i), index=i, split="test", label=1, attack_type="live", path=str(i)) for i in range(len(ds))]
    jobs = [(ds, items[a:a + 8]) for a in range(0, len(items), 8)]
    captioner = Blip2Captioner.load("tiny", decoding=DecodingConfig(max_new_tokens=4, min_new_tokens=1),
                                    batch_size=8)
    reference = [captioner.caption(images) for images, _, _ in _decoded_batches(jobs, threads=0)]
    batches = list(_decoded_batches(jobs, threads=2, prepare=captioner.prepare))
    assert [len(images) for images, _, _ in batches] == [8, 2]  # the second batch ends at the corrupt row 10
    assert [captioner.caption_prepared(prepared) for _, _, prepared in batches] == reference
    assert all(len(prepared) == 1 for _, _, prepared in batches)  # one chunk each (chunks of 32 images)


def test_damaged_state_files_and_input_shards_are_named_with_what_to_do(pipeline_run, tmp_path):
    """Review 6 H3/M1: a file of the run cut short by a crash gives one line naming it (no traceback)."""
    import shutil

    from click.testing import CliRunner

    from scf.captioning.pipeline import CaptionPipeline, PipelineError
    from scf.cli import main

    ds, finished, _ = pipeline_run

    def damaged(name, relative, keep=8, redo=()):
        out = tmp_path / name
        shutil.copytree(finished, out)
        for folder in redo:
            shutil.rmtree(out / folder)
        f = out / relative
        f.write_bytes(f.read_bytes()[:keep])
        with pytest.raises(PipelineError) as err:
            CaptionPipeline(_config(out), dataset=ds).run()
        message = str(err.value)
        assert "\n" not in message and message.startswith(str(f.parent if f.suffix == ".safetensors" else f))
        return message

    assert damaged("cfg", "scf_caption_config.json").endswith(
        "delete it and rerun the same command: the settings are recorded again (captions already written are kept)")
    assert "not valid JSON (" in damaged("record", "captioner/scf_finetune.json")
    assert "unreadable spoof-aware captioner C_S (SafetensorError" in damaged("cs", "captioner/model.safetensors",
                                                                         redo=("spoof", "corpus"))
    shard = next((finished / "general").glob("rank-*/data/train-*.parquet")).relative_to(finished)
    assert "unreadable caption shard" in damaged("shard", shard, keep=300)

    folder = tmp_path / "bench"  # a truncated shard in the INPUT benchmark (CLI, one line)
    (folder / "data").mkdir(parents=True)
    for split in ds:
        ds[split].to_parquet(str(folder / "data" / f"{split}-00000.parquet"))
    bad = folder / "data" / "test-00000.parquet"
    bad.write_bytes(bad.read_bytes()[:500])
    res = CliRunner().invoke(main, ["caption", "--dataset", str(folder), "--out", str(tmp_path / "o"), "--preset",
                                    "tiny", "--no-progress"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.strip().splitlines()[-1].startswith(f"Error: {bad}: unreadable shard (ArrowInvalid: ")


def test_a_failed_push_is_one_line_and_keeps_the_corpus(pipeline_run, monkeypatch, tmp_path):
    """Review 5 #4: the Hub unreachable gives one line saying where the corpus is, not a traceback."""
    import shutil

    import huggingface_hub

    from scf.captioning.pipeline import CaptionPipeline, PipelineError

    ds, finished, _ = pipeline_run
    out = tmp_path / "run"
    shutil.copytree(finished, out)

    class Offline:
        def create_repo(self, repo_id, **kw):
            raise ConnectionError("[Errno -2] Name or service not known\n(more lines)")

    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    with pytest.raises(PipelineError) as err:
        CaptionPipeline(_config(out, stage="corpus", push_to_hub="me/corpus"), dataset=ds).run()
    assert str(err.value) == (
        "push to me/corpus failed: ConnectionError: [Errno -2] Name or service not known (more lines); the corpus "
        f"is in {out / 'corpus'}: rerun the same command to retry (no caption is redone), or hf upload "
        f"--repo-type dataset --private me/corpus {out / '.corpus.hub-upload'} (its copy without local paths; "
        "delete it afterwards)")
    assert (out / "corpus" / "README.md").exists()
    # the copy named in the message is there, and names no local path (review 10 #6)
    assert (out / ".corpus.hub-upload" / "README.md").exists()
    assert str(tmp_path) not in (out / ".corpus.hub-upload" / "scf_caption_config.json").read_text()
    # review 12 M1: the copy is hidden, so `--dataset OUT` (load_table(OUT)) gets every row once, not twice
    from scf.schema import load_table

    for other in ("corpus-general", "corpus-judgment"):  # corpora of other --interpretation runs of the fixture
        shutil.rmtree(out / other, ignore_errors=True)
    corpus = load_table(str(out / "corpus"), "vqa")
    both = load_table(str(out), "vqa")
    assert {s: len(d) for s, d in both.items()} == {s: len(d) for s, d in corpus.items()}


def test_fakes_of_unknown_type_get_a_useful_way_forward(tmp_path):
    """Review 5 #6 and #18: own data in real/ + fake/ folders types every fake 'other'. The empty-D_S error says
    why, proposes the medium words the captions name, and a --keywords file extending 'other' then fills D_S."""
    from scf.captioning.keywords import load_keywords, suggest_keywords
    from scf.captioning.pipeline import CaptionPipeline, PipelineError

    k = load_keywords()
    assert suggest_keywords(["a printed photo", "a phone screen"], 4, keywords=k, attack_type="other") == [
        "printed", "photo", "phone", "screen"]
    ds = toy_dataset(n=1, attacks=("live", "other"))
    captions = ["a man holding a printed photo of a face", "a face shown on a phone screen"]
    CaptionPipeline(_config(tmp_path / "a", split="fake", stage="general"), dataset=ds,
                    general_captioner=KnownCaptioner(captions)).run()
    with pytest.raises(PipelineError) as err:
        CaptionPipeline(_config(tmp_path / "a", split="fake", stage="filter"), dataset=ds).run()
    message = str(err.value)
    assert "\n" not in message and "(other matched nothing)" in message
    assert "candidates for a --keywords file: other: printed, photo. 'other' is the type " \
           "of fakes whose attack type was not given (an image-folder fake/ or spoof/ folder, a manifest without " \
           "attack_type); they match only the 'other' keywords (glasses, sunglasses, goggles, funny eyes, ...). " \
           "Give them their type (print/, replay/, mask/ folders or an attack_type column) and ingest again, or " \
           "extend 'other' with the medium words in a --keywords file" in message
    kw = tmp_path / "kw.yaml"
    kw.write_text("mode: extend\nkeywords:\n  other: [photo, screen]\n")  # what the message proposes
    summary = CaptionPipeline(_config(tmp_path / "b", split="fake", stage="general", keywords_file=str(kw)),
                              dataset=ds, general_captioner=KnownCaptioner(captions)).run()
    summary = CaptionPipeline(_config(tmp_path / "b", split="fake", stage="filter", keywords_file=str(kw)),
                              dataset=ds).run()
    assert summary["filter"]["d_s"] == 1  # the train fake (D_S takes --finetune-splits train)

    ds = toy_dataset(n=1, attacks=("live", "replay"))  # no candidate at all: "(none)", not "-"
    CaptionPipeline(_config(tmp_path / "c", split="fake", stage="general"), dataset=ds,
                    general_captioner=KnownCaptioner(["a photo of a face"] * 2)).run()
    with pytest.raises(PipelineError, match=r"candidates for a --keywords file: replay: \(none\)\. To go on"):
        CaptionPipeline(_config(tmp_path / "c", split="fake", stage="filter"), dataset=ds).run()


def test_the_python_api_snippet_of_the_docs_runs_as_written(tmp_path, monkeypatch, capsys):
    """Review 5 #7: docs/captioning.md's "Python API" block, executed verbatim (in a temporary folder)."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "captioning.md").read_text()
    section = doc.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/captioning.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "{'rows': {'train': 168, 'test': 120}, 'folder': 'runs/scf-api/corpus'}" in printed
    from scf.schema import load_table

    assert len(load_table(str(tmp_path / "runs/scf-api/corpus"), "vqa")["train"]) == 168


def test_a_second_run_on_a_held_out_is_refused_in_one_line_and_a_killed_run_leaves_no_lock(tmp_path, hold_folder):
    """Review 16 M1: two `scf caption` on one --out interleaved their shards (376 caption rows for 288 keys)."""
    import signal

    from click.testing import CliRunner

    from scf.captioning.pipeline import CaptionPipeline, PipelineError, read_captions
    from scf.cli import main

    ds = toy_dataset(n=1)
    ds.save_to_disk(str(tmp_path / "bench"))
    out = tmp_path / "out"
    args = ["caption", "--preset", "tiny", "--split", "real", "--out", str(out), "--dataset", str(tmp_path / "bench"),
            "--max-new-tokens", "3", "--min-new-tokens", "1", "--no-progress"]
    holder = hold_folder(out, "scf caption")
    try:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1
        assert result.output.count("\n") == 1 and "Traceback" not in result.output, result.output
        assert result.output.startswith(f"Error: {out} is in use by scf caption (pid {holder.pid} on ")
        assert result.output.rstrip().endswith("wait for it to end or choose another folder")
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    result = CliRunner().invoke(main, args)  # the kill -9 left no stale lock: the run goes as before
    assert result.exit_code == 0, result.output
    assert sorted(read_captions(out / "general")) == ["test:toy:live/0.png#0", "train:toy:live/0.png#0"]

    # Python API: the folder is held from the pipeline's construction to the end of run() (or close())
    first = CaptionPipeline(_config(tmp_path / "api", stage="general"), dataset=ds,
                            general_captioner=KnownCaptioner(_general_captions(ds)))
    with pytest.raises(PipelineError, match=r"api is in use by scf caption \(pid "):
        CaptionPipeline(_config(tmp_path / "api", stage="general"), dataset=ds)
    first.run()
    with CaptionPipeline(_config(tmp_path / "api", stage="general"), dataset=ds) as again:
        assert again.run()["general"]["already"] == 6


@pytest.mark.slow
def test_every_rank_stops_in_one_line_when_rank0_finds_the_out_held(tmp_path, hold_folder):
    """Only rank 0 takes the lock; the other ranks get its refusal and exit too instead of waiting at a barrier."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    toy_dataset(n=1).save_to_disk(str(tmp_path / "bench"))
    out = tmp_path / "out"
    holder = hold_folder(out, "scf caption")
    bindir = Path(sys.executable).parent
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "cache"))
    cmd = [str(bindir / "torchrun"), "--standalone", "--nproc_per_node", "2", "--no-python", str(bindir / "scf"),
           "caption", "--dataset", str(tmp_path / "bench"), "--preset", "tiny", "--out", str(out), "--split", "real",
           "--max-new-tokens", "3", "--min-new-tokens", "1", "--no-progress"]
    try:
        start = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        elapsed = time.monotonic() - start
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert proc.returncode != 0
    line = f"Error: {out} is in use by scf caption (pid {holder.pid} on "
    assert (proc.stdout + proc.stderr).count(line) == 2, proc.stdout[-3000:] + proc.stderr[-3000:]  # both ranks
    assert elapsed < 200
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


SPLIT_OUT_WRAPPER = """import os, sys
# each rank in its own working folder: a relative --out names a different folder per rank, as a node-local
# --out does on several nodes
os.chdir(os.path.join(sys.argv.pop(1), "rank" + os.environ["RANK"]))
import scf.locking
scf.locking.SHARED_PROBE_WAIT_S = 2.0  # not the minute a refused start waits for a slow NFS
from scf.cli import main
main()
"""


@pytest.mark.slow
def test_ranks_that_see_different_out_folders_are_refused_before_captioning(tmp_path):
    """A multi-node run with a node-local --out used to caption each node's share into its own folder and stop
    at the corpus stage, hours later, with captions "missing": now every rank stops at the start in one line."""
    import os
    import subprocess
    import sys

    toy_dataset(n=1).save_to_disk(str(tmp_path / "bench"))
    for rank in (0, 1):
        (tmp_path / f"rank{rank}").mkdir()
    script = tmp_path / "wrap.py"
    script.write_text(SPLIT_OUT_WRAPPER, encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path), "caption", "--dataset", str(tmp_path / "bench"), "--preset", "tiny", "--out", "out",
           "--split", "real", "--max-new-tokens", "3", "--min-new-tokens", "1", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = [" ".join(line.split()) for line in output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 2 and len(set(lines)) == 1, output[-3000:]  # both ranks, the same line
    assert lines[0].startswith("Error: out is not the same folder on every process: rank(s) 1 (on ")
    assert "wrote there (looked for 2 s); " in lines[0]
    assert lines[0].endswith("captioning on several nodes needs --out on a file system that every node shares")
    assert not (tmp_path / "rank0" / "out").exists()  # the probe removed, then the folder it created
    assert not (tmp_path / "rank1" / "out").exists()
