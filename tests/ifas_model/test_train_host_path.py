"""review24 M3/M4: evaluation processes and copies each image once; training keeps per-micro-batch values on the
device (read back at log lines and once per optimizer step for the NaN/inf check), pinned batches on CUDA; on the
CPU every logged value is bit-identical to the plain read-back-every-value arithmetic."""

from __future__ import annotations

import json

import pytest
from _train_corpus import build_corpus, poison_loss, tiny_lora_config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus") / "vqa", splits=("train",), max_rows=24)


def _config(corpus, out, **kw):
    return tiny_lora_config(corpus, out, **{"save_every": 0, **kw})


def _train_lines(run):
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if r.get("split") == "train"}


def test_eval_prompt_inputs_are_the_prompt_only_call_without_a_second_image_pass(corpus):
    import torch

    from ifas_model.processing import IFASProcessor, build_image_processor
    from ifas_model.training.data import VQACollator, VQADataset, load_corpus
    from scf.presets import build_tiny_tokenizer

    processor = IFASProcessor(build_image_processor(224), build_tiny_tokenizer())
    rows = VQADataset(load_corpus(str(corpus))["train"], "full")
    examples = [rows[i] for i in range(5)]
    calls = {"n": 0}
    image_processor = processor.image_processor

    def counting(*args, **kwargs):
        calls["n"] += 1
        return image_processor(*args, **kwargs)

    processor.image_processor = counting
    batch = VQACollator(processor, with_prompts=True)([*examples])
    assert calls["n"] == 1  # the training call only: the prompt-only inputs process no image
    processor.image_processor = image_processor
    old = processor(images=[e["image"] for e in examples], judgments=None, return_tensors="pt")
    assert set(batch.prompt_inputs) == {"input_ids", "attention_mask"}
    for key in ("input_ids", "attention_mask"):
        assert batch.prompt_inputs[key].dtype == old[key].dtype and torch.equal(batch.prompt_inputs[key], old[key])
    assert torch.equal(batch.inputs["pixel_values"], old["pixel_values"])  # the same pixels score the images
    with pytest.raises(ValueError, match="batch_size"):
        processor.prompt_inputs(0)


def test_evaluation_equals_the_two_pass_evaluation_bit_for_bit(corpus, tmp_path):
    """Loss, AUC, HTER, EER and threshold of `Trainer.evaluate` against the evaluation as it was: the processor run
    twice per image, each batch's loss and scores read back as it comes."""
    import torch

    from ifas_model.metrics import flip_metrics
    from ifas_model.training.trainer import Trainer

    trainer = Trainer(_config(corpus, tmp_path, eval_split="holdout", holdout_fraction=0.3, batch_size=3))
    record = trainer.evaluate()
    assert record["n_rows"] == len(trainer.eval_set) > 3  # several batches, the last one short

    processor, model = trainer.processor, trainer.model
    model.eval()
    loss_sum, loss_n, rows = 0.0, 0, []
    with torch.no_grad():
        for start in range(0, len(trainer.eval_set), 3):
            ex = [trainer.eval_set[i] for i in range(start, min(start + 3, len(trainer.eval_set)))]
            images = [e["image"] for e in ex]
            enc = processor(images=images, judgments=[e["judgment"] for e in ex],
                            interpretations=[e["interpretation"] for e in ex], return_tensors="pt")
            out = model(**{k: enc[k] for k in ("pixel_values", "input_ids", "attention_mask", "labels",
                                              "answer_segments")})
            loss_sum += float(out.loss) * len(ex)
            loss_n += len(ex)
            p = processor(images=images, judgments=None, return_tensors="pt")
            scores = model.score(**{k: p[k] for k in ("pixel_values", "input_ids", "attention_mask")})
            rows += list(zip(scores.float().cpu().tolist(), [e["label"] for e in ex], [e["video_id"] for e in ex],
                             strict=True))
    model.train()
    assert record["loss"] == loss_sum / loss_n
    m = flip_metrics([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], name=trainer.eval_source)
    assert {k: record[k] for k in ("auc", "hter", "eer", "threshold", "n_samples")} == \
        {k: m[k] for k in ("auc", "hter", "eer", "threshold", "n_samples")}


def test_log_lines_are_the_exact_means_of_the_per_step_losses_also_across_a_resume(corpus, tmp_path):
    """The losses summed on the device give the same doubles as summing each step's read-back value: a run logging
    every 3 steps reports exactly (l1 + l2 + l3) / 3 of a run logging every step, also when it was stopped at step 2
    (the window saved in the checkpoint, restored on the device) and resumed."""
    import torch

    from ifas_model.training.trainer import LOSS_KEYS, Trainer

    every = Trainer(_config(corpus, tmp_path / "every"))
    every.fit()
    by_three = Trainer(_config(corpus, tmp_path / "three", log_every=3))
    by_three.fit()
    one, three = _train_lines(tmp_path / "every"), _train_lines(tmp_path / "three")
    assert sorted(three) == [3, 4]
    for key in LOSS_KEYS:
        assert three[3][key] == (one[1][key] + one[2][key] + one[3][key]) / 3  # exact, not approximately
        assert three[4][key] == one[4][key]
    assert [three[s]["lr"] for s in (3, 4)] == [one[s]["lr"] for s in (3, 4)]
    a, b = every.model.state_dict(), by_three.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    cfg = _config(corpus, tmp_path / "resumed", log_every=3, save_every=2)
    assert Trainer(cfg).fit(stop_after=2) == {"stopped_at": 2}
    Trainer(cfg).fit()
    resumed = _train_lines(tmp_path / "resumed")
    assert {s: {k: resumed[s][k] for k in LOSS_KEYS} for s in resumed} == \
        {s: {k: three[s][k] for k in LOSS_KEYS} for s in three}


def test_a_nan_in_the_second_micro_batch_stops_before_the_step_naming_that_micro_batch(corpus, tmp_path):
    """The NaN/inf check runs once per optimizer step, after the step's micro-batches and before the optimizer:
    the weights stay those of the last good step and the message names the micro-batch that failed."""
    import torch

    from ifas_model.training.trainer import NonFiniteLossError, Trainer

    trainer = Trainer(_config(corpus, tmp_path, grad_accum=2))
    poison_loss(trainer, 4, float("inf"))  # step 2, its second micro-batch (micro-batch 3 of the epoch)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(inf\) at step 2 \(epoch 0, micro-batch 3, rows"):
        trainer.fit()
    assert trainer.step == 1  # the bad step was not applied
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    event = json.loads((tmp_path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert event["event"] == "non_finite" and event["step"] == 2 and event["micro_batch"] == 3


def test_loaders_pin_only_on_cuda(corpus, tmp_path):
    from ifas_model.training.trainer import Trainer

    trainer = Trainer(_config(corpus, tmp_path, eval_split="holdout"))
    assert trainer.loader.pin_memory is (trainer.dist.device.type == "cuda")
    trainer.evaluate()
    assert trainer.eval_loader.pin_memory is (trainer.dist.device.type == "cuda")


@pytest.mark.gpu
def test_cuda_batches_are_pinned_and_a_short_run_logs_finite_values(corpus, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA: pinned host batches and non_blocking copies exist only there")
    from ifas_model.training.trainer import LOSS_KEYS, Trainer

    trainer = Trainer(_config(corpus, tmp_path, eval_split="holdout", eval_every=2, log_every=2, num_workers=1))
    assert trainer.dist.device.type == "cuda" and trainer.loader.pin_memory
    trainer.sampler.set_epoch(0)
    batch = next(iter(trainer.loader))
    assert all(v.is_pinned() for v in batch.inputs.values())
    trainer.fit()
    lines = _train_lines(tmp_path)
    assert sorted(lines) == [2, 4] and all(lines[s][k] == lines[s][k] for s in lines for k in LOSS_KEYS)
    evals = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
             if r.get("split") == "eval"]
    assert [r["step"] for r in evals] == [2, 4] and all(r["loss"] == r["loss"] for r in evals)


def test_a_rank_without_a_bad_loss_says_another_process_had_it(tmp_path):
    """review27 L1: under torchrun, a rank whose losses were finite stopped with "non-finite loss (5.59...)"
    naming its own (finite) value and rows; it now says the bad loss was on another process."""
    import pytest

    from ifas_model.training.trainer import NonFiniteLossError, Trainer

    trainer = Trainer.__new__(Trainer)
    trainer.run_dir, trainer.step, trainer.epoch = tmp_path, 6, 1
    events = []
    trainer.log_metrics = events.append
    with pytest.raises(NonFiniteLossError) as caught:
        trainer._stop_non_finite("loss", float("nan"), 3, None, elsewhere=True)
    assert str(caught.value) == ("non-finite loss at step 7 (epoch 1) on another process (this one's were finite); "
                                 "stopped. Last good checkpoint: none")
    assert events[0]["event"] == "non_finite"
