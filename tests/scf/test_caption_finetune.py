"""Fine-tuning C_G into C_S on the tiny random BLIP-2: label masking, loss going down, resume, save/load, push."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _images(n: int, size: int = 32):
    from PIL import Image

    rng = np.random.RandomState(0)
    return [Image.fromarray(rng.randint(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


CAPTIONS = ["a man holding a printed paper", "a face on a phone screen", "a woman with a paper mask",
            "a picture of a face on a monitor"]


def _no_dropout(model):
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


@pytest.fixture()
def tiny():
    from scf.presets import build_tiny_captioner

    model, processor = build_tiny_captioner(seed=0)
    return _no_dropout(model), processor


def test_build_batch_puts_the_loss_on_caption_tokens_only(tiny):
    from scf.captioning.finetune import build_batch

    model, processor = tiny
    end = 7  # any id: the caller passes the model's stop token (see the test below)
    batch = build_batch(processor, _images(2), ["a paper", "a phone screen here"], "a photo of ", 30,
                        end_token_id=end)
    tok = processor.tokenizer
    head = processor(images=_images(1), text=["a photo of"], return_tensors="pt")["input_ids"].shape[1]
    labels, ids = batch["labels"], batch["input_ids"]
    assert labels.shape == ids.shape == batch["attention_mask"].shape
    assert (labels[:, :head] == -100).all()  # image tokens, BOS, prompt
    for i, caption in enumerate(["a paper", "a phone screen here"]):
        target = tok(" " + caption, add_special_tokens=False)["input_ids"] + [end]
        assert labels[i, head : head + len(target)].tolist() == target
        assert (labels[i, head + len(target) :] == -100).all()  # right padding
        assert batch["attention_mask"][i].sum() == head + len(target)
    assert tok.decode(ids[0, head:head + 2]).strip() == "a paper"


def test_targets_end_with_the_token_generate_stops_on_not_the_tokenizer_eos(tiny):
    """As in Salesforce/blip2-opt-2.7b (text_config.eos_token_id 50118, "\\n"; tokenizer eos </s>, 2)."""
    from scf.captioning.captioner import Blip2Captioner, caption_stop_ids, generation_end_id
    from scf.captioning.finetune import build_batch

    model, processor = tiny
    tok = processor.tokenizer
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    assert model.config.text_config.eos_token_id == model.generation_config.eos_token_id == newline[0]
    assert tok.eos_token_id != newline[0]
    end = generation_end_id(model, tok)
    assert end == newline[0]
    assert caption_stop_ids(model, tok) == [end, tok.eos_token_id]  # the tokenizer's eos as a guard
    assert Blip2Captioner(model, processor, "tiny").stop_token_ids == [end, tok.eos_token_id]
    batch = build_batch(processor, _images(1), ["a paper"], "a photo of", 30, end_token_id=end)
    assert [int(x) for x in batch["labels"][0] if int(x) != -100][-1] == newline[0]

    class _Bare:  # no generation config: text_config, then the tokenizer
        config = model.config

    assert generation_end_id(_Bare(), tok) == newline[0]
    model.generation_config.eos_token_id = [newline[0], 99]  # a list: the first one
    assert generation_end_id(model, tok) == newline[0]


def test_a_c_s_overfitted_on_one_caption_stops_right_after_it(tiny, tmp_path, monkeypatch):
    import torch

    import scf.captioning.finetune as finetune
    from scf.captioning.captioner import Blip2Captioner, DecodingConfig

    model, processor = tiny
    # The random tiny OPT's logits are nearly flat and it is frozen in the recipe; train it too here, so that
    # one caption can be learnt in a few dozen steps (what is tested is where the caption ends).
    monkeypatch.setattr(finetune, "TRAINABLE_PREFIXES", (*finetune.TRAINABLE_PREFIXES, "language_model."))
    image = _images(1)[0]
    caption = "a paper mask"
    config = finetune.FinetuneConfig(learning_rate=1e-2, epochs=30, batch_size=1, warmup_steps=0,
                                     checkpoint_every=1000, precision="fp32")
    record = finetune.finetune_captioner(model, processor, lambda idx: [image for _ in idx], [caption], config,
                                         tmp_path / "ft", show_progress=False)
    tok = processor.tokenizer
    assert record["end_token_id"] == tok("\n", add_special_tokens=False)["input_ids"][0]
    assert record["end_token"] == "\n" and record["last_loss"] < 1.0
    decoding = DecodingConfig(min_new_tokens=1, max_new_tokens=12)
    for fast in (True, False):
        captioner = Blip2Captioner(record["model"], processor, "C_S", decoding, batch_size=1, fast=fast)
        assert captioner.caption([image]) == [caption]  # no run-on to the 12-token budget, no trailing "\n"
    inputs = processor(images=[image], text=[decoding.prompt_text], return_tensors="pt")
    from scf.captioning.captioner import generate_caption_ids

    with torch.inference_mode():
        ids = generate_caption_ids(record["model"], **inputs, decoding=decoding,
                                   stop_token_ids=captioner.stop_token_ids)[0].tolist()
    target = tok(" " + caption, add_special_tokens=False)["input_ids"]
    assert ids[: len(target) + 1] == target + [record["end_token_id"]]
    assert all(i == tok.pad_token_id for i in ids[len(target) + 1:])


def test_trainable_parts_are_qformer_queries_and_projection(tiny):
    from scf.captioning.finetune import FinetuneConfig, mark_trainable

    model, _ = tiny
    trainable, frozen = mark_trainable(model, FinetuneConfig())
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "query_tokens" in names and any(n.startswith("language_projection.") for n in names)
    assert not any(n.startswith(("vision_model.", "language_model.")) for n in names)
    assert trainable > 0 and frozen > 0


def test_lr_schedule_warms_up_then_decays():
    from scf.captioning.finetune import lr_lambda

    f = lr_lambda(total_steps=100, warmup_steps=1000)  # warm-up capped at 10 steps
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_finetune_lowers_the_loss_and_saves_a_loadable_blip2(tiny, tmp_path):
    import torch
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    from scf.captioning.captioner import Blip2Captioner, DecodingConfig
    from scf.captioning.finetune import FinetuneConfig, finetune_captioner, save_captioner

    model, processor = tiny
    images = _images(4)
    config = FinetuneConfig(learning_rate=1e-2, warmup_steps=0, epochs=8, batch_size=4, checkpoint_every=3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    record = finetune_captioner(model, processor, lambda idx: [images[i] for i in idx], CAPTIONS, config,
                                tmp_path / "ft", show_progress=False)
    metrics = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 9)) and record["steps"] == 8
    losses = [m["loss"] for m in metrics]
    # The tiny OPT is random and frozen, so only the visual prefix can lower the loss: a small but steady drop.
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.01 and losses[-1] < losses[0]
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith(("qformer.", "query_tokens", "language_projection.")) for n in changed)

    out = save_captioner(record["model"], processor, tmp_path / "captioner", record)
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))
    saved = json.loads((out / "scf_finetune.json").read_text())
    assert saved["steps"] == 8 and saved["end_token"] == "\n"
    loaded = Blip2ForConditionalGeneration.from_pretrained(out)
    assert loaded.generation_config.eos_token_id == saved["end_token_id"]  # C_S stops where it was trained to
    Blip2Processor.from_pretrained(out)
    for (n, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), n
    captions = Blip2Captioner.load(str(out), decoding=DecodingConfig(max_new_tokens=4, min_new_tokens=1),
                                   batch_size=3).caption(images)
    assert len(captions) == 4 and all(isinstance(c, str) for c in captions)


def test_bf16_finetune_stores_frozen_towers_in_bf16_and_trains_fp32_parts(tiny, tmp_path):
    # precision="bf16" is what "auto" means on a GPU; here it runs on CPU under CPU autocast.
    import torch
    from transformers import Blip2ForConditionalGeneration

    from scf.captioning.finetune import FinetuneConfig, finetune_captioner, save_captioner

    model, processor = tiny
    images = _images(4)

    def run(precision: str, work: str, model=model) -> list[float]:
        config = FinetuneConfig(learning_rate=1e-2, warmup_steps=0, epochs=3, batch_size=4, checkpoint_every=3,
                                precision=precision)
        finetune_captioner(model, processor, lambda idx: [images[i] for i in idx], CAPTIONS, config,
                           tmp_path / work, show_progress=False)
        return [json.loads(x)["loss"] for x in (tmp_path / work / "metrics.jsonl").read_text().splitlines()]

    bf16 = run("bf16", "bf16")
    for name, p in model.named_parameters():
        expected = torch.float32 if name.startswith(("qformer.", "query_tokens", "language_projection.")) \
            else torch.bfloat16
        assert p.dtype == expected, name
    out = save_captioner(model, processor, tmp_path / "captioner")
    loaded = Blip2ForConditionalGeneration.from_pretrained(out, dtype=torch.float32, use_safetensors=True)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    from scf.presets import build_tiny_captioner

    fp32 = run("fp32", "fp32", _no_dropout(build_tiny_captioner(seed=0)[0]))  # the same C_G, afresh
    assert len(bf16) == len(fp32) == 3
    assert all(abs(a - b) <= 0.05 * abs(b) + 0.05 for a, b in zip(bf16, fp32, strict=True)), (bf16, fp32)
    with pytest.raises(ValueError, match="precision"):
        FinetuneConfig(precision="fp16")


def test_lora_on_the_llm_trains_adapters_and_saves_merged(tiny, tmp_path):
    # --lora-r > 0: LoRA adapters on the LLM train beside the Q-Former; the saved C_S is a plain BLIP-2
    # (adapters merged) that loads with one from_pretrained and differs from C_G in the LLM weights.
    import torch
    from transformers import Blip2ForConditionalGeneration

    from scf.captioning.finetune import FinetuneConfig, finetune_captioner, save_captioner

    model, processor = tiny
    llm_before = {n: p.detach().clone() for n, p in model.language_model.named_parameters()}
    images = _images(4)
    config = FinetuneConfig(learning_rate=1e-2, warmup_steps=0, epochs=4, batch_size=4, lora_r=4)
    record = finetune_captioner(model, processor, lambda idx: [images[i] for i in idx], CAPTIONS, config,
                                tmp_path / "ft", show_progress=False)
    losses = [json.loads(x)["loss"] for x in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]
    out = save_captioner(record["model"], processor, tmp_path / "captioner", record)
    loaded = Blip2ForConditionalGeneration.from_pretrained(out)
    assert not any("lora_" in n for n in loaded.state_dict())
    changed = [n for n, p in loaded.language_model.named_parameters() if not torch.equal(p, llm_before[n])]
    assert changed and all(n.endswith(("q_proj.weight", "v_proj.weight", "k_proj.weight", "out_proj.weight"))
                           for n in changed), changed


def test_finetune_resumes_after_an_interruption_exactly(tmp_path):
    import torch

    from scf.captioning.finetune import FinetuneConfig, finetune_captioner
    from scf.presets import build_tiny_captioner

    images = _images(4)
    config = FinetuneConfig(learning_rate=1e-3, warmup_steps=2, epochs=4, batch_size=2, checkpoint_every=2)

    ref, processor = build_tiny_captioner(seed=0)
    finetune_captioner(_no_dropout(ref), processor, lambda idx: [images[i] for i in idx], CAPTIONS, config,
                       tmp_path / "ref", show_progress=False)

    calls = {"n": 0}

    def flaky(idx):
        calls["n"] += 1
        if calls["n"] == 6:  # dies during step 6, after the checkpoint at step 4
            raise KeyboardInterrupt
        return [images[i] for i in idx]

    model, processor = build_tiny_captioner(seed=0)
    with pytest.raises(KeyboardInterrupt):
        finetune_captioner(_no_dropout(model), processor, flaky, CAPTIONS, config, tmp_path / "run", show_progress=False)
    assert [p.name for p in sorted((tmp_path / "run" / "checkpoints").glob("step-*"))] == ["step-00000002",
                                                                                           "step-00000004"]
    fresh, processor = build_tiny_captioner(seed=0)  # a new process: weights from C_G, state from the checkpoint
    record = finetune_captioner(_no_dropout(fresh), processor, lambda idx: [images[i] for i in idx], CAPTIONS, config,
                                tmp_path / "run", show_progress=False)
    assert record["steps"] == 8
    ref_metrics = [json.loads(line) for line in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 9))  # step 5 was redone, not logged twice
    for a, b in zip(ref_metrics, metrics, strict=True):
        # Same data order, learning rate and optimizer state; float round-off only.
        assert a["lr"] == pytest.approx(b["lr"]) and a["loss"] == pytest.approx(b["loss"], abs=1e-4)
    for (n, a), b in zip(ref.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=5e-3), n


def test_a_resumed_finetune_with_dropout_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    """The RNG states are in each checkpoint: after a kill, the rerun draws the same dropout masks, so the
    losses and the final weights are those of a run that was never interrupted (bit for bit on CPU)."""
    import torch

    from scf.captioning.finetune import FinetuneConfig, finetune_captioner
    from scf.presets import build_tiny_captioner

    images = _images(4)
    config = FinetuneConfig(learning_rate=1e-3, warmup_steps=2, epochs=2, batch_size=2, checkpoint_every=2)
    ref, processor = build_tiny_captioner(seed=0)
    assert any(m.p > 0 for m in ref.modules() if isinstance(m, torch.nn.Dropout))  # dropout is on
    torch.manual_seed(1)
    finetune_captioner(ref, processor, lambda idx: [images[i] for i in idx], CAPTIONS, config, tmp_path / "ref",
                       show_progress=False)

    def dies_at_step_3(idx, calls=[]):  # noqa: B006 - a call counter
        calls.append(idx)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return [images[i] for i in idx]

    model, processor = build_tiny_captioner(seed=0)
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        finetune_captioner(model, processor, dies_at_step_3, CAPTIONS, config, tmp_path / "run", show_progress=False)
    assert (tmp_path / "run" / "checkpoints" / "step-00000002" / "rng.safetensors").is_file()
    fresh, processor = build_tiny_captioner(seed=0)
    torch.manual_seed(12345)  # a new process whose RNG is somewhere else: the checkpoint's state is restored
    finetune_captioner(fresh, processor, lambda idx: [images[i] for i in idx], CAPTIONS, config, tmp_path / "run",
                       show_progress=False)
    losses = [[json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
              for d in ("ref", "run")]
    assert losses[0] == losses[1]
    for (n, a), b in zip(ref.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), n


def test_push_captioner_uploads_a_copy_without_local_paths(tmp_path, monkeypatch):
    """Review 10 #6: scf_finetune.json names the local --captioner; the pushed copy does not."""
    from pathlib import Path

    import huggingface_hub

    from scf.captioning.finetune import push_captioner_to_hub

    calls, uploaded = [], {}
    folder = tmp_path / "run" / "captioner"
    folder.mkdir(parents=True)
    general = tmp_path / "models" / "blip2-opt-2.7b"
    general.mkdir(parents=True)
    (folder / "scf_finetune.json").write_text(json.dumps({"captioner_general": str(general), "steps": 3}))
    (folder / "model.safetensors").write_bytes(b"weights")

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw["repo_type"], kw["private"]))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
            calls.append(("upload", folder_path, repo_id, repo_type))
            uploaded.update({p.name: p.read_bytes() for p in Path(folder_path).iterdir()})

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = push_captioner_to_hub(folder, "me/scf-cs", local_paths=[str(general), "tiny"])
    assert url.endswith("me/scf-cs")
    assert ("create", "me/scf-cs", "model", True) in calls
    assert ("upload", str(tmp_path / "run" / ".captioner.hub-upload"), "me/scf-cs", "model") in calls
    assert json.loads(uploaded["scf_finetune.json"]) == {"captioner_general": "<local>/blip2-opt-2.7b", "steps": 3}
    assert uploaded["model.safetensors"] == b"weights"
    assert json.loads((folder / "scf_finetune.json").read_text())["captioner_general"] == str(general)  # kept here
    assert not (tmp_path / "run" / ".captioner.hub-upload").exists()


def test_an_unreadable_checkpoint_names_its_folder_and_a_torn_metrics_line_is_dropped(tmp_path):
    """Review 6 H3/M1: a checkpoint cut short by a crash stops the resume in one line naming it and the
    checkpoint it will resume from once deleted; a torn line of metrics.jsonl (a log) does not block it."""
    from scf.captioning.finetune import FinetuneCheckpointError, finetune_captioner
    from scf.presets import build_tiny_captioner

    config, images = _checkpointed_run(tmp_path)  # dies during step 4, after the checkpoints at steps 2 and 3
    ckpts = tmp_path / "run" / "checkpoints"
    newest = ckpts / "step-00000003"
    weights = newest / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with (tmp_path / "run" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "lo')
    fresh, processor = build_tiny_captioner(seed=0)

    def load(idx):
        return [images[i] for i in idx]

    with pytest.raises(FinetuneCheckpointError) as err:
        finetune_captioner(fresh, processor, load, CAPTIONS, config, tmp_path / "run", show_progress=False)
    assert str(err.value).startswith(f"{newest}: unreadable fine-tuning checkpoint (SafetensorError: ")
    assert str(err.value).endswith("delete that folder and rerun: C_S resumes from step-00000002")
    import shutil

    shutil.rmtree(newest)  # what the message says
    record = finetune_captioner(fresh, processor, load, CAPTIONS, config, tmp_path / "run", show_progress=False)
    assert record["steps"] == 4
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]


def _checkpointed_run(tmp_path, steps_before_crash: int = 3):
    """A fine-tuning run killed during step ``steps_before_crash + 1`` (checkpoints after every step)."""
    from scf.captioning.finetune import FinetuneConfig, finetune_captioner
    from scf.presets import build_tiny_captioner

    images = _images(4)
    config = FinetuneConfig(learning_rate=1e-3, warmup_steps=0, epochs=2, batch_size=2, checkpoint_every=1)
    model, processor = build_tiny_captioner(seed=0)
    calls = {"n": 0}

    def flaky(idx):
        calls["n"] += 1
        if calls["n"] == steps_before_crash + 1:
            raise KeyboardInterrupt
        return [images[i] for i in idx]

    with pytest.raises(KeyboardInterrupt):
        finetune_captioner(model, processor, flaky, CAPTIONS, config, tmp_path / "run", show_progress=False)
    return config, images


def test_the_optimizer_state_is_safetensors_and_json_and_resumes_the_same(tmp_path):
    """Review 10 #5: no pickle in a checkpoint; the optimizer state read back is the one that was saved."""
    import torch

    from scf.captioning.finetune import (
        FinetuneConfig,
        _load_checkpoint,
        _save_checkpoint,
        lr_lambda,
        mark_trainable,
    )
    from scf.presets import build_tiny_captioner

    config = FinetuneConfig(learning_rate=1e-3, warmup_steps=0, epochs=2, batch_size=2)

    def fresh():
        model, _ = build_tiny_captioner(seed=0)
        mark_trainable(model, config)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                      weight_decay=config.weight_decay)
        return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(10, 0))

    model, optimizer, scheduler = fresh()
    for _ in range(2):
        sum((p.float() ** 2).sum() for p in model.parameters() if p.requires_grad).backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    _save_checkpoint(tmp_path, 2, model, optimizer, [1.5, 1.25])
    folder = tmp_path / "step-00000002"
    assert sorted(p.name for p in folder.iterdir()) == ["optimizer.json", "optimizer.safetensors", "rng.json",
                                                        "rng.safetensors", "state.json", "trainable.safetensors"]
    saved = optimizer.state_dict()
    model2, optimizer2, _ = fresh()
    assert _load_checkpoint(folder, model2, optimizer2) == (2, [1.5, 1.25])
    back = optimizer2.state_dict()
    assert back["param_groups"] == saved["param_groups"]  # lr after the schedule, initial_lr, betas (a tuple), ...
    assert isinstance(back["param_groups"][0]["betas"], tuple)
    assert back["state"].keys() == saved["state"].keys() and len(saved["state"]) > 0
    for k, state in saved["state"].items():
        assert state.keys() == back["state"][k].keys()
        for name, value in state.items():
            assert torch.equal(back["state"][k][name], value), (k, name)
    for (n, a), b in zip(model.named_parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("damage", ["optimizer.json", "optimizer.safetensors", "rng.json", "rng.safetensors"])
def test_a_damaged_optimizer_state_gives_the_one_line_to_delete_the_folder(tmp_path, damage):
    from scf.captioning.finetune import FinetuneCheckpointError, finetune_captioner
    from scf.presets import build_tiny_captioner

    config, images = _checkpointed_run(tmp_path)
    newest = tmp_path / "run" / "checkpoints" / "step-00000003"
    file = newest / damage
    file.write_bytes(file.read_bytes()[: len(file.read_bytes()) // 2])
    model, processor = build_tiny_captioner(seed=0)
    with pytest.raises(FinetuneCheckpointError) as err:
        finetune_captioner(model, processor, lambda idx: [images[i] for i in idx], CAPTIONS, config,
                           tmp_path / "run", show_progress=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{newest}: unreadable fine-tuning checkpoint (")
    assert message.endswith("delete that folder and rerun: C_S resumes from step-00000002")


def test_an_old_pickled_optimizer_checkpoint_is_refused_unread(tmp_path, monkeypatch):
    """A checkpoint folder of an earlier scf (optimizer.pt) is never torch.load-ed: one line says to delete it."""
    import pickle

    import torch

    from scf.captioning import finetune as ft

    config, images = _checkpointed_run(tmp_path)
    ckpts = tmp_path / "run" / "checkpoints"
    for folder in ckpts.glob("step-*"):  # as the earlier version wrote them
        (folder / "optimizer.json").unlink()
        (folder / "optimizer.safetensors").unlink()
        (folder / "optimizer.pt").write_bytes(pickle.dumps({"state": {}, "param_groups": []}))

    def no_torch_load(*a, **kw):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_torch_load)
    from scf.presets import build_tiny_captioner

    model, processor = build_tiny_captioner(seed=0)
    with pytest.raises(ft.FinetuneCheckpointError) as err:
        ft.finetune_captioner(model, processor, lambda idx: [images[i] for i in idx], CAPTIONS, config,
                              tmp_path / "run", show_progress=False)
    assert str(err.value) == (
        f"{ckpts / 'step-00000003'}: a fine-tuning checkpoint of an earlier scf version (its optimizer state is a "
        f"pickle, optimizer.pt, which this version does not read); delete the folder {ckpts} and rerun: C_S is "
        "fine-tuned from the start")
    import shutil

    shutil.rmtree(ckpts)  # what the message says: a fresh start, and the old run's metrics lines are dropped
    record = ft.finetune_captioner(model, processor, lambda idx: [images[i] for i in idx], CAPTIONS, config,
                                   tmp_path / "run", show_progress=False)
    assert record["steps"] == 4
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]


def test_a_checkpoint_written_before_rng_states_were_saved_still_resumes(tmp_path):
    """review23 L4: C_S checkpoints of the previous release hold no rng.* files; they resume (dropout then
    differs from an uninterrupted run, as the docs say) instead of being called unreadable."""
    from scf.captioning.finetune import finetune_captioner
    from scf.presets import build_tiny_captioner

    config, images = _checkpointed_run(tmp_path)
    newest = tmp_path / "run" / "checkpoints" / "step-00000003"
    for name in ("rng.json", "rng.safetensors"):
        (newest / name).unlink()
    model, processor = build_tiny_captioner(seed=0)
    record = finetune_captioner(model, processor, lambda idx: [images[i] for i in idx], CAPTIONS, config,
                                tmp_path / "run", show_progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert record["steps"] == 4 and steps == [1, 2, 3, 4]  # resumed after step 3, not started again
