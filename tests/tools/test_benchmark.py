"""tools/benchmark.py and tools/flops.py: FLOP counts by hand on tiny configs, and a tiny CPU run of the tool."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _load(name: str):
    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_flops_match_a_hand_count_for_tiny_configs():
    from transformers import Blip2QFormerConfig, CLIPVisionConfig, OPTConfig

    from ifas_model.configuration import GACConfig, IFASConfig

    F = _load("flops")
    # ViT: image 32, patch 16 -> 4 patches + CLS = 5 tokens; width 8, MLP 16, 2 layers, 3 channels.
    vision = CLIPVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=16)
    vit = F.vit_forward(vision)
    patch_embed = 2 * 4 * (3 * 16 * 16) * 8  # 4 patches, each a 768 -> 8 product
    per_layer = 2 * 5 * (4 * 8 * 8 + 2 * 8 * 16)  # q, k, v, o and the two MLP matrices on 5 tokens
    assert vit.linear == patch_embed + 2 * per_layer == 59_392
    assert vit.attention == 2 * 4 * 5 * 5 * 8 == 1_600

    # OPT: width 8, ffn 16, 2 layers, vocabulary 10, 6 tokens, LM head at 1 position.
    text = OPTConfig(hidden_size=8, ffn_dim=16, num_hidden_layers=2, num_attention_heads=2, vocab_size=10,
                     word_embed_proj_dim=8)
    dec = F.decoder_forward(text, 6, 1)
    assert dec.linear == 2 * 6 * 2 * (4 * 64 + 2 * 8 * 16) + 2 * 8 * 10 == 12_448
    assert dec.attention == 2 * 2 * 6 * 6 * 8 == 1_152  # causal: half of 4 n^2 d per layer

    # Q-Former: 2 queries, width 4, MLP 8, 2 layers, cross-attention in layer 0 into 5 tokens of width 8.
    qformer = Blip2QFormerConfig(hidden_size=4, intermediate_size=8, num_hidden_layers=2, num_attention_heads=1,
                                 cross_attention_frequency=2, encoder_hidden_size=8)
    qf = F.qformer_forward(qformer, 2, 5)
    assert qf.linear == 2 * (2 * 2 * (4 * 16 + 2 * 4 * 8)) + (2 * 2 * 2 * 16 + 2 * 5 * 2 * 8 * 4) == 1_792
    assert qf.attention == 2 * (4 * 2 * 2 * 4) + 4 * 2 * 5 * 4 == 288

    # GAC on that ViT: M = 1 query + L = 2 layer-CLS tokens, width 8 = vision width (no patch projection).
    config = IFASConfig(vision_config=vision, connector_config=GACConfig(num_queries=1, hidden_size=8,
                                                                         num_attention_heads=2, mlp_ratio=2.0),
                        text_config=text, yes_token_id=1, no_token_id=2)
    gac = F.gac_forward(config.connector_config, 4)
    q = 3
    assert gac.linear == 2 * 2 * 8 * 8 + 2 * q * 4 * 64 + 2 * q * 2 * 64 + 2 * 4 * 2 * 64 + 2 * q * 2 * 8 * 16
    assert gac.attention == 4 * q * q * 8 + 4 * q * 4 * 8

    # A frozen-LLM training sample: vision forward only, connector 3x, LLM 2x with the head at 2 labelled tokens.
    sample = F.ifas_train_sample(config, text_tokens=3, labelled_tokens=2, llm="frozen")
    proj = 2 * 3 * 8 * 8
    llm = F.decoder_forward(text, 6, 0)
    assert sample["vision"] == vit.forward
    assert sample["connector"] == 3 * gac.forward + 3 * proj
    assert sample["llm"] == 2 * llm.linear + 3 * llm.attention + 2 * (2 * 2 * 8 * 10)
    assert sample["total"] == sample["vision"] + sample["connector"] + sample["llm"]
    full = F.ifas_train_sample(config, text_tokens=3, labelled_tokens=2, llm="full")
    assert full["llm"] == 3 * llm.linear + 3 * llm.attention + 3 * (2 * 2 * 8 * 10)


def test_flops_reproduce_the_facts_anchor_counts():
    """The anchor's counts (docs/benchmarks.md): ViT-L/14 ~162 GFLOP, OPT-2.7B ~5.3 GFLOP/token, anchor training ~0.96 TFLOP, scoring ~0.4."""
    F = _load("flops")
    bench = _load("benchmark")
    vision, qformer, text, queries = bench.anchor_configs(tiny=False)
    assert F.vit_forward(vision).forward / 1e9 == pytest.approx(162, rel=0.01)
    assert F.decoder_forward(text, 1, 1).forward / 1e9 == pytest.approx(5.3, rel=0.01)
    assert F.anchor_train_sample(vision, qformer, text, queries, 40)["total"] / 1e12 == pytest.approx(0.96, rel=0.01)
    assert F.anchor_score_sample(vision, qformer, text, queries, 12)["total"] / 1e12 == pytest.approx(0.4, rel=0.03)


def test_tiny_run_writes_json_with_positive_figures_and_regenerates_docs(tmp_path):
    bench = _load("benchmark")
    sizes = bench.Sizes(**{**bench.TINY_SIZES.__dict__, "train_batch": 2, "score_batch": 2, "caption_batch": 2,
                           "anchor_caption_batch": 2, "new_tokens": 3, "warmup": 1, "iters": 1, "matmul_n": 64})
    out = tmp_path / "bench.json"
    results = bench.run("tiny", "cpu", what=("matmul", "score", "train", "caption", "anchor"),
                        train_modes=("frozen", "full"), out=out, sizes=sizes)
    assert results["errors"] == {}
    on_disk = json.loads(out.read_text())
    assert set(on_disk) >= {"meta", "matmul", "ifas", "blip2", "anchor", "comparison", "targets", "skipped", "errors"}
    assert on_disk["meta"]["mode"] == "tiny" and on_disk["meta"]["torch"]
    assert on_disk["matmul"]["tflops"] > 0 and on_disk["matmul"]["copy_tb_per_s"] > 0
    assert set(on_disk["ifas"]) == {"score", "train_frozen", "train_frozen_reference", "train_full"}
    assert set(on_disk["blip2"]) == {"caption_fast", "caption_reference"}
    assert set(on_disk["anchor"]) == {"train", "score", "caption"}
    for group in ("ifas", "blip2", "anchor"):
        for name, fig in on_disk[group].items():
            assert fig["value"] > 0, name
            assert fig["flops_per_item"] > 0 and fig["tflops"] > 0 and fig["fraction_of_matmul"] > 0, name
            assert fig["peak_memory_gib"] is None  # CPU: no CUDA allocator to read
    # The fast path counts fewer LM-head FLOPs than the reference path, for the same model.
    assert on_disk["ifas"]["train_frozen"]["flops_per_item"] < on_disk["ifas"]["train_frozen_reference"]["flops_per_item"]
    assert on_disk["blip2"]["caption_fast"]["greedy_rows_identical_to_reference"] == 1.0
    rows = {row["key"]: row for row in on_disk["comparison"]}
    assert rows["ifas.score"]["ratio_to_anchor"] == pytest.approx(
        on_disk["ifas"]["score"]["value"] / on_disk["anchor"]["score"]["value"])
    assert rows["blip2.caption_fast"]["target"] == ">= 10x anchor"
    assert rows["ifas.train_frozen"]["target_met"] is None  # tiny runs are not judged against the targets

    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# title\n\n{bench.RESULTS_BEGIN}\nold\n{bench.RESULTS_END}\n\nafter\n")
    assert bench.main(["--render", str(out), "--docs", str(docs)]) == 0  # what gpu_check.sh runs last
    text = docs.read_text()
    assert "old" not in text and text.endswith("after\n") and "CPU smoke run" in text
    assert "| scoring (images/s) |" in text


def test_training_figures_run_ifas_trains_precision_and_optimizer(tmp_path, monkeypatch):
    """The bf16 run (the GPU's dtype path, here on CPU) trains with ifas-train's own set_training_dtypes and
    build_adamw, so the figures are ifas-train's speed."""
    import torch

    import ifas_model.adapters as adapters
    import ifas_model.training.trainer as trainer

    bench = _load("benchmark")
    seen = []
    real_cast, real_adamw = adapters.set_training_dtypes, trainer.build_adamw

    def cast(model, dtype=None):
        seen.append(("cast", dtype))
        counts = real_cast(model, dtype)
        frozen = {p.dtype for p in model.parameters() if p.is_floating_point() and not p.requires_grad}
        trained = {p.dtype for p in model.parameters() if p.requires_grad}
        seen.append(("dtypes", frozen, trained))
        return counts

    def adamw(model, **kw):
        seen.append(("adamw", kw["learning_rate"]))
        return real_adamw(model, **kw)

    monkeypatch.setattr(adapters, "set_training_dtypes", cast)
    monkeypatch.setattr(trainer, "build_adamw", adamw)
    sizes = bench.Sizes(**{**bench.TINY_SIZES.__dict__, "train_batch": 2, "warmup": 1, "iters": 1})
    results = bench.run("tiny", "cpu", what=("train",), train_modes=("frozen", "full"), out=tmp_path / "b.json",
                        sizes=sizes, dtype="bf16")
    assert results["errors"] == {}
    assert results["ifas"]["train_frozen"]["value"] > 0 and results["ifas"]["train_full"]["value"] > 0
    assert seen.count(("cast", torch.bfloat16)) == 2 and seen.count(("adamw", 1e-5)) == 2
    assert ("dtypes", {torch.bfloat16}, {torch.float32}) in seen


def test_qlora_is_skipped_with_the_reason_when_bitsandbytes_is_missing(tmp_path, monkeypatch):
    bench = _load("benchmark")
    monkeypatch.setattr(bench, "_import_error", lambda lib: "not installed" if lib == "bitsandbytes" else None)
    results = bench.run("tiny", "cpu", what=("qlora",), out=tmp_path / "b.json")
    assert results["skipped"]["ifas.train_qlora"].startswith("cannot import bitsandbytes: not installed")
    assert "train_qlora" not in results["ifas"] and results["errors"] == {}


def test_bad_section_name_is_refused():
    bench = _load("benchmark")
    with pytest.raises(ValueError, match="unknown --what"):
        bench.run("tiny", "cpu", what=("nope",))
    assert bench.main(["--mode", "tiny", "--device", "cpu", "--what", "nope"]) == 2


def test_full_size_configs_build_the_real_architectures_on_the_meta_device():
    """The full-mode configs give the published sizes (no memory is allocated on the meta device)."""
    import torch
    from transformers import Blip2ForConditionalGeneration

    from ifas_model.modeling import IFASForConditionalGeneration

    bench = _load("benchmark")

    def count(module):
        return sum(p.numel() for p in module.parameters())

    with torch.device("meta"):
        ifas = IFASForConditionalGeneration(bench.ifas_config(tiny=False))
        blip2 = Blip2ForConditionalGeneration(bench.blip2_config(tiny=False))
        anchor = bench.build_anchor(tiny=False)
    assert ifas.config.image_token_count == 56
    assert count(ifas.vision_model) / 1e6 == pytest.approx(303.5, rel=0.01)  # CLIP ViT-L/14 vision tower
    assert count(ifas.language_model) / 1e9 == pytest.approx(2.651, rel=0.01)  # OPT-2.7B (tied head)
    assert count(blip2.vision_model) / 1e9 == pytest.approx(0.986, rel=0.01)  # EVA ViT-g/14, 39 layers
    assert count(blip2) / 1e9 == pytest.approx(3.745, rel=0.01)  # Salesforce/blip2-opt-2.7b
    assert anchor.num_queries == 32 and anchor.configs[1].encoder_hidden_size == 1024


def test_benchmark_runs_without_datasets_or_bitsandbytes(tmp_path):
    """The GPU image has torch and transformers but neither datasets nor bitsandbytes: the tool and
    the library code it calls (ifas-train's precision and optimizer included) must not import them."""
    import subprocess

    root = TOOLS.parent
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('datasets', 'bitsandbytes', 'gradio'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import runpy\n"
        f"sys.argv = ['benchmark.py', '--mode', 'tiny', '--device', 'cpu', '--dtype', 'bf16', '--iters', '1',\n"
        f"            '--what', 'train,qlora,pipeline,feed', '--train-modes', 'frozen,full', '--out', {str(tmp_path / 'b.json')!r}]\n"
        "runpy.run_path('tools/benchmark.py', run_name='__main__')\n"
    )
    src = [str(root / "packages" / p / "src") for p in ("scf", "ifas-model", "ifas-eval")]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(src), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", blocker], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "b.json").read_text())
    assert results["errors"] == {}
    assert set(results["ifas"]) == {"train_frozen", "train_frozen_reference", "train_full"}
    assert "bitsandbytes" in results["skipped"]["ifas.train_qlora"]
    assert results["pipeline"]["images_per_s"] > 0
    # the host-feed paths read datasets tables, as the CLIs do: skipped with the reason, not failed
    assert results["skipped"]["feed"].startswith("cannot import datasets: ") and results["feed"] == {}


def test_pipeline_section_measures_the_cpu_image_pipeline(tmp_path):
    bench = _load("benchmark")
    sizes = bench.Sizes(**{**bench.TINY_SIZES.__dict__, "score_batch": 8})
    results = bench.run("tiny", "cpu", what=("pipeline",), out=tmp_path / "b.json", sizes=sizes)
    p = results["pipeline"]
    assert results["errors"] == {} and p["images"] == 16 and p["batch"] == 8
    assert p["images_per_s"] > 0 and p["images_per_s_one_thread"] > 0 and p["threads"] >= 1
    text = bench.results_markdown(results)
    assert "CPU image pipeline (PNG decoding + CLIP preprocessing, batches of 8)" in text
    # beside a scoring figure of the same run it says whether the CPU keeps up
    results["ifas"]["score"] = {"value": 1e9}
    assert "NOT kept up with" in bench.pipeline_line(results)


def test_reference_training_flops_count_the_lm_head_where_the_model_runs_it():
    """review14 #10: the reference path (return_logits=True) runs the LM head at the T text positions
    (logits_to_keep skips the visual ones), the fast path at the labelled ones; the counts follow the model."""
    import torch

    from ifas_model.modeling import IFASForConditionalGeneration

    F = _load("flops")
    bench = _load("benchmark")
    sizes = bench.TINY_SIZES
    config = bench.ifas_config(tiny=True)
    torch.manual_seed(0)
    model = IFASForConditionalGeneration(config).train()
    r = bench.Runner("tiny", "cpu", None, sizes)
    batch = bench._ifas_train_batch(r, config, 2)
    positions = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda module, args, out: positions.append(args[0].shape[:-1].numel()))
    try:
        model(**batch).loss.backward()
        model(**batch, return_logits=True).loss.backward()
    finally:
        hook.remove()
    fast_head, ref_head = positions[0] // 2, positions[1] // 2  # per sample
    assert (fast_head, ref_head) == (sizes.answer_tokens, sizes.text_tokens)

    fast = F.ifas_train_sample(config, sizes.text_tokens, sizes.answer_tokens, "frozen")
    ref = F.ifas_train_reference_sample(config, sizes.text_tokens, sizes.answer_tokens)
    head_per_position = F.decoder_lm_head(config.text_config, 1)
    # frozen head, gradients through it: 2x its forward at each extra position
    assert ref["total"] - fast["total"] == pytest.approx(2 * (ref_head - fast_head) * head_per_position)
    assert ref["llm"] - fast["llm"] == pytest.approx(ref["total"] - fast["total"])
    # the full-size count: 12 extra positions (40 text - 28 labelled), not 68
    full = bench.ifas_config(tiny=False)
    extra = (F.ifas_train_reference_sample(full, 40, 28)["total"] - F.ifas_train_sample(full, 40, 28, "frozen")["total"])
    assert extra == pytest.approx(2 * 12 * 2 * 2560 * 50272)


def _small(bench, **kw):
    return bench.Sizes(**{**bench.TINY_SIZES.__dict__, "train_batch": 2, "score_batch": 2, "caption_batch": 2,
                          "anchor_caption_batch": 2, "new_tokens": 3, "warmup": 1, "iters": 1, "matmul_n": 64, **kw})


def test_budget_skips_a_section_that_would_not_fit_and_says_why(tmp_path, monkeypatch):
    """review14 #1: with --budget-s, a section needing more than what is left is skipped (not cut off), the
    reason is in the JSON and the rendered results; captioning runs last; memory at each start is recorded."""
    import torch

    bench = _load("benchmark")
    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    monkeypatch.setattr(bench, "_import_error", lambda lib: "not installed" if lib == "bitsandbytes" else None)
    # the fast captioning path "needs" more than the budget; everything else fits
    monkeypatch.setitem(bench.NEED_S, "tiny", {"blip2.caption_fast": 10_000})
    out = tmp_path / "b.json"
    results = bench.run("tiny", "cpu", what=("matmul", "caption", "qlora"), out=out, sizes=_small(bench),
                        budget_s=5_000)
    meta = results["meta"]
    assert meta["requested"] == ["matmul", "ifas.train_qlora", "blip2.caption"]  # caption after QLoRA
    assert list(meta["section_start_s"]) == ["matmul", "ifas.train_qlora", "blip2.caption"]
    assert set(meta["memory_at_start_gib"]) == set(meta["section_start_s"])  # None on CPU, GiB on CUDA
    assert meta["finished"] is True and meta["running"] is None and meta["budget_s"] == 5_000
    assert results["errors"] == {} and results["matmul"]["tflops"] > 0
    assert "caption_reference" in results["blip2"] and "caption_fast" not in results["blip2"]
    reason = results["skipped"]["blip2.caption_fast"]
    assert reason.startswith("not started:") and "of the 5000 s budget, it needs about 10000 s" in reason
    assert resets == [1]  # the compiler is reset after captioning, also when the fast path did not run
    text = bench.results_markdown(json.loads(out.read_text()))
    assert f"- `blip2.caption_fast`: skipped: {reason}" in text

    # a spent budget skips every section before it starts; the run still ends and says so for each
    spent = bench.run("tiny", "cpu", what=("matmul", "score", "anchor"), out=tmp_path / "c.json", sizes=_small(bench),
                      budget_s=0)
    assert set(spent["skipped"]) == {"matmul", "anchor.build", "ifas.build"} and spent["ifas"] == {}
    text = bench.results_markdown(spent)
    # review17 L1: nothing measured -> one line with every reason, no empty table header
    (line,) = [x for x in text.splitlines() if x.startswith("Nothing measured: ")]
    assert "`matmul`: skipped: not started: 0 s left of the 0 s budget" in line
    assert "`ifas.score`: `ifas.build` skipped: not started" in line
    assert "`anchor.score`: `anchor.build` skipped: not started" in line
    assert "| measurement |" not in text and "No matmul ceiling" not in text
    assert "Skipped `" not in text and "\n- `" not in text  # each reason once, in that line


def test_cut_off_run_renders_what_it_lacks_and_the_anchor_figures(tmp_path):
    """review14 #5: a run killed inside a section (as `timeout` kills it) renders a block that says it did not
    finish, where it ended, which requested figures are missing and why, and the anchor's own figures."""
    import subprocess

    bench = _load("benchmark")
    root = TOOLS.parent
    out = tmp_path / "cut.json"
    killer = (
        "import os, signal, sys\n"
        "sys.path.insert(0, 'tools')\n"
        "import benchmark\n"
        "benchmark.measure_caption = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # killed inside blip2.caption\n"
        f"benchmark.main(['--mode', 'tiny', '--device', 'cpu', '--iters', '1', '--what', 'matmul,anchor,caption,pipeline',"
        f" '--out', {str(out)!r}])\n"
    )
    src = [str(root / "packages" / p / "src") for p in ("scf", "ifas-model", "ifas-eval")]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(src), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", killer], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    cut = json.loads(out.read_text())
    assert cut["meta"]["finished"] is False and cut["meta"]["running"] == "blip2.caption"
    assert "caption" in cut["anchor"] and "comparison" not in cut

    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# t\n\n{bench.RESULTS_BEGIN}\nold\n{bench.RESULTS_END}\n")
    assert bench.main(["--render", str(out), "--docs", str(docs)]) == 0
    text = docs.read_text()
    assert "**This run did not finish: it ended inside `blip2.caption`" in text
    assert "Anchor, same run: captioning with `generate` " in text and "images/s at batch 4" in text  # no row
    assert "| measurement |" not in text  # no I-FAS or BLIP-2 figure: no empty table (review17 L1)
    assert "- `blip2.caption_reference`: cut off: the run ended while this section was running" in text
    assert "- `blip2.caption_fast`: cut off" in text
    assert "- `pipeline`: not reached: the run ended inside `blip2.caption`" in text
    assert "- `matmul`" not in text and "- `anchor.caption`" not in text  # measured, so not listed
    assert bench.main(["--render", str(out), "--docs", str(tmp_path / "nope.md")]) == 2  # one line, no traceback


def test_failed_training_mode_frees_its_optimizer_state_and_gradients(tmp_path, monkeypatch):
    """review14 #6: a mode that fails mid-step leaves no AdamW state or gradients for the next mode's figure."""
    import gc
    import weakref

    bench = _load("benchmark")
    real_step, real_prepare = bench._train_step, bench._prepare_training
    calls, seen = [], []

    def step(r, model, batch, optimizer, **kw):
        calls.append(1)
        if len(calls) == 2:  # the frozen mode's second step: gradients exist, the AdamW state too
            model(**batch).loss.backward()
            raise RuntimeError("simulated CUDA out of memory")
        return real_step(r, model, batch, optimizer, **kw)

    def prepare(r, model):
        if seen:  # the next mode starts: the failed mode's optimizer is gone and no gradient is left
            gc.collect()
            seen.append((seen[0](), sum(p.grad is not None for p in model.parameters())))
        optimizer = real_prepare(r, model)
        if not seen:
            seen.append(weakref.ref(optimizer))
        return optimizer

    monkeypatch.setattr(bench, "_train_step", step)
    monkeypatch.setattr(bench, "_prepare_training", prepare)
    results = bench.run("tiny", "cpu", what=("train",), train_modes=("frozen", "full"), out=tmp_path / "b.json",
                        sizes=_small(bench))
    assert "simulated CUDA out of memory" in results["errors"]["ifas.train_frozen"]
    assert results["ifas"]["train_full"]["value"] > 0
    assert seen[1] == (None, 0)


def test_versions_and_commit_of_a_copy_without_metadata_or_git(tmp_path, monkeypatch):
    """review14 #4 and #11: a package folder without *.dist-info (the trimmed bitsandbytes) reports its
    __version__; a broken one says so; the commit comes from git, else .bench_commit, else 'unknown'."""
    bench = _load("benchmark")
    (tmp_path / "trimmedpkg").mkdir()
    (tmp_path / "trimmedpkg" / "__init__.py").write_text("__version__ = '0.50.2'\n")
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("raise RuntimeError('native library failed to load')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert bench.library_version("trimmedpkg") == "0.50.2 (no package metadata)"
    assert bench.library_version("brokenpkg") == "present, does not import (RuntimeError)"
    assert bench.library_version("surely_not_a_package_here") is None
    assert bench.library_version("peft")[0].isdigit()  # from the installed metadata

    copy = tmp_path / "copy"
    copy.mkdir()
    assert bench.git_commit(copy) == "unknown (no git repository and no .bench_commit)"
    (copy / ".bench_commit").write_text("74c4ed2\n")
    assert bench.git_commit(copy) == "74c4ed2 (from .bench_commit)"
    assert bench.git_commit() and not bench.git_commit().startswith("unknown")  # this checkout has .git

    meta = {"mode": "full", "date": "d", "card": "H200", "python": "3.12", "torch": "2.11", "transformers": "5.17",
            "peft": "0.17", "bitsandbytes": "0.50.2 (no package metadata)", "git_commit": "74c4ed2 (from .bench_commit)",
            "command": "c", "finished": True}
    head = bench.results_markdown({"meta": meta, "matmul": {}, "comparison": [], "skipped": {}, "errors": {}})
    assert "bitsandbytes 0.50.2 (no package metadata); commit 74c4ed2 (from .bench_commit)." in head


def test_gpu_check_leaves_a_broken_carried_bitsandbytes_off_the_path(tmp_path):
    """review14 #3: gpu_check.sh imports the carried .bnb first; a copy whose import fails stays off PYTHONPATH
    (one line says why), so LoRA still runs, and QLoRA's skip reason is the real error. The python here hides
    the venv's own bitsandbytes, as on the GPU image, which has none."""
    import os
    import subprocess

    root = TOOLS.parent
    bnb = tmp_path / "bnb" / "bitsandbytes"
    bnb.mkdir(parents=True)
    (bnb / "__init__.py").write_text('raise RuntimeError("simulated: bitsandbytes native library failed to load")\n')
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "from importlib.machinery import PathFinder\n"
        "class HideInstalled(PathFinder):\n"
        "    @classmethod\n"
        "    def find_spec(cls, name, path=None, target=None):\n"
        "        spec = PathFinder.find_spec(name, path, target)\n"
        "        if name == 'bitsandbytes' and spec is not None and 'site-packages' in (spec.origin or ''):\n"
        "            return None\n"
        "        return spec\n"
        "sys.meta_path[:] = [HideInstalled if f is PathFinder else f for f in sys.meta_path]\n")
    python = tmp_path / "python"
    python.write_text(f'#!/bin/bash\nexport PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{hide}"\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    out = tmp_path / "out"
    env = {"PATH": os.environ["PATH"], "OUT": str(out), "PYTHON": str(python), "BNB_DIR": str(bnb.parent),
           "HOME": str(tmp_path), "GPU_CHECK_PREVIOUS": str(tmp_path / "previous.json")}
    proc = subprocess.run(["bash", "tools/gpu_check.sh", "--mode", "tiny", "--device", "cpu", "--iters", "1",
                           "--what", "train,qlora", "--train-modes", "lora"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    line = (f"carried bitsandbytes ({bnb.parent}) does not import: RuntimeError: simulated: bitsandbytes native "
            "library failed to load; left off PYTHONPATH, QLoRA will be skipped")
    assert proc.stdout.splitlines()[0] == line
    results = json.loads((out / "benchmark.json").read_text())
    assert results["errors"] == {} and results["ifas"]["train_lora"]["value"] > 0
    reason = results["skipped"]["ifas.train_qlora"]
    assert reason.startswith("cannot import bitsandbytes: not installed") and "simulated: bitsandbytes native" in reason
    assert "peft" not in reason.split("(")[0]  # peft imports fine: it is not blamed
    assert results["meta"]["carried_bitsandbytes_error"].startswith("RuntimeError: simulated")
    assert results["meta"]["budget_s"] > 0
    assert results["meta"]["command"].split().count("--mode") == 1  # review17 L1: the caller's mode, once
    rendered = (out / "benchmarks.md").read_text()
    assert "the carried copy does not import: RuntimeError: simulated" in rendered


def _spy_caption_calls(monkeypatch) -> list[tuple[int, bool]]:
    """Record (batch size, fast) of every `generate_caption_ids` call the benchmark makes."""
    import scf.captioning.captioner as captioner

    real, calls = captioner.generate_caption_ids, []

    def spy(model, pixel_values, input_ids, attention_mask, decoding, fast=True):
        calls.append((pixel_values.shape[0], fast))
        return real(model, pixel_values, input_ids, attention_mask, decoding=decoding, fast=fast)

    monkeypatch.setattr(captioner, "generate_caption_ids", spy)
    return calls


def test_greedy_agreement_reuses_the_timed_fast_batch(tmp_path, monkeypatch):
    """review14 #2: the fast path runs at one batch size only (a second size would recompile the decoding step
    on CUDA); its greedy tokens are compared with the reference on the rows both batches hold."""
    bench = _load("benchmark")
    calls = _spy_caption_calls(monkeypatch)
    results = bench.run("tiny", "cpu", what=("caption",), out=tmp_path / "b.json",
                        sizes=_small(bench, caption_batch=4, anchor_caption_batch=2))
    assert results["errors"] == {}
    assert {b for b, fast in calls if fast} == {4} and {b for b, fast in calls if not fast} == {2}
    fig = results["blip2"]["caption_fast"]
    assert fig["greedy_rows_compared"] == 2 and fig["greedy_rows_identical_to_reference"] == 1.0  # fp32: exact
    assert fig["compile_s"] >= 0 and fig["warmup_calls"] == 2
    assert "identical to plain `generate` on 100.0% of the 2 rows compared" in bench.results_markdown(results)


def _gpu_like_results(bench):
    """A results dict shaped like a full-size CUDA run's. A FIXTURE OF THE RENDERER ONLY: these numbers were not
    measured by anyone and must never be copied into the docs; they only exercise results_markdown/update_docs."""
    meta = {"mode": "full", "device": "cuda:0", "card": "NVIDIA H200 (renderer test fixture)", "card_memory_gib": 139.8,
            "cuda": "13.0", "date": "fixture", "python": "3.12", "torch": "2.11", "transformers": "5.17",
            "peft": "0.17", "bitsandbytes": None, "git_commit": "fixture", "command": "fixture", "finished": True,
            "requested": ["matmul", "pipeline", "anchor.score", "ifas.score"]}
    results = {"meta": meta, "matmul": {"n": 8192, "dtype": "bfloat16", "tflops": 700.0, "copy_tb_per_s": 4.0},
               "pipeline": {"batch": 256, "threads": 8, "cpu_count": 16, "images_per_s": 3000.0,
                            "images_per_s_one_thread": 400.0},
               "anchor": {"score": {"value": 1000.0, "unit": "images/s", "batch": 256, "fraction_of_matmul": 0.5,
                                    "peak_memory_gib": 20.0}},
               "ifas": {"score": {"value": 1500.0, "unit": "images/s", "batch": 256, "fraction_of_matmul": 0.8,
                                  "peak_memory_gib": 21.0}},
               "blip2": {}, "skipped": {}, "errors": {}}
    results["comparison"] = bench.compare(results)
    return results


NO_GPU_SENTENCE = ("no gpu figures", "measured yet", "no gpu run", "no gpu performance")


def test_whether_gpu_figures_exist_is_said_only_inside_the_rendered_block(tmp_path):
    """review17 M2: docs/benchmarks.md says whether GPU figures exist only inside the block the renderer
    rewrites: a GPU run's block leaves no "none measured" sentence anywhere in the page; a CPU or tiny run's
    block says so itself."""
    bench = _load("benchmark")
    page = (TOOLS.parent / "docs" / "benchmarks.md").read_text()
    head, rest = page.split(bench.RESULTS_BEGIN, 1)
    outside = (head + rest.split(bench.RESULTS_END, 1)[1]).lower()
    assert not [s for s in NO_GPU_SENTENCE if s in outside]

    docs = tmp_path / "benchmarks.md"
    docs.write_text(page)
    bench.update_docs(docs, _gpu_like_results(bench))
    text = docs.read_text()
    assert "NVIDIA H200 (renderer test fixture)" in text and "| scoring (images/s) | 1.5e+03 |" in text
    assert [s for s in NO_GPU_SENTENCE if s in text.lower()] == []
    assert "GPU scoring needs 1.5e+03 images/s (kept up with)" in text

    cpu = _gpu_like_results(bench)
    cpu["meta"].update(device="cpu", card="CPU (x86_64)")
    bench.update_docs(docs, cpu)
    text = docs.read_text()
    assert text.count("No GPU figures measured: this run was on CPU (x86_64) (full-size configs)") == 1
    assert "scoring on cpu needs" in text and "GPU scoring" not in text  # review17 L1
    cpu["meta"]["mode"] = "tiny"
    assert "No GPU figures measured: a CPU smoke run of the tiny configs" in bench.results_markdown(cpu)


def test_a_run_without_i_fas_figures_renders_no_empty_table(tmp_path):
    """review17 L1: figures but no comparison row (only the anchor measured): no table header, a line instead."""
    bench = _load("benchmark")
    results = _gpu_like_results(bench)
    results["ifas"] = {}
    results["skipped"]["ifas.build"] = "not started: 10 s left of the 280 s budget, it needs about 30 s"
    results["comparison"] = bench.compare(results)
    text = bench.results_markdown(results)
    assert "| measurement |" not in text and "No I-FAS or BLIP-2 figure in this run" in text
    assert "Anchor, same run: scoring 1e+03 images/s at batch 256" in text
    assert "- `ifas.score`: `ifas.build` skipped: not started: 10 s left" in text
    assert "Nothing measured" not in text


def test_caption_budget_prefers_the_fast_path_when_only_one_figure_fits(tmp_path, monkeypatch):
    """review17 L2: both captioning figures are planned up front against their combined estimate; when the time
    left fits only one, the fast path (the target) runs, with its greedy tokens checked against plain generate
    on a small batch, and the reference figure is skipped with the reason; with too little for either, the
    model is not even built."""
    bench = _load("benchmark")
    calls = _spy_caption_calls(monkeypatch)
    # 40 s build + 100 s fast path fit the 500 s budget; with the 1,000 s reference they would not
    monkeypatch.setitem(bench.NEED_S, "tiny", {"blip2.caption": 40, "blip2.caption_reference": 1_000,
                                               "blip2.caption_fast": 100})
    sizes = _small(bench, caption_batch=4, anchor_caption_batch=4, caption_check_rows=2)
    results = bench.run("tiny", "cpu", what=("caption",), out=tmp_path / "b.json", sizes=sizes, budget_s=500)
    assert results["errors"] == {} and set(results["blip2"]) == {"caption_fast"}
    assert {b for b, fast in calls if fast} == {4} and [b for b, fast in calls if not fast] == [2]  # one check call
    fig = results["blip2"]["caption_fast"]
    assert fig["greedy_rows_compared"] == 2 and fig["greedy_rows_identical_to_reference"] == 1.0
    reason = results["skipped"]["blip2.caption_reference"]
    assert reason.startswith("not started: ") and "fits the fast path (the target, about 140 s)" in reason
    assert "about 1140 s for both" in reason and "on 2 rows instead" in reason
    assert f"- `blip2.caption_reference`: skipped: {reason}" in bench.results_markdown(results)

    # too little for either: skipped before the (slow, on a GPU) build, with what it would need
    calls.clear()
    built = []
    monkeypatch.setattr(bench, "blip2_config", lambda tiny: built.append(1))
    results = bench.run("tiny", "cpu", what=("caption",), out=tmp_path / "c.json", sizes=sizes, budget_s=100)
    assert built == [] and calls == [] and results["blip2"] == {}
    assert "100 s budget, it needs about 140 s" in results["skipped"]["blip2.caption"]


def test_resume_measures_only_what_the_earlier_run_lacks_and_merges(tmp_path, monkeypatch):
    """review17 L3: --resume-from completes an earlier run (the second device call): the sections it measured
    are not run again, the missing ones are (with the matmul ceiling again, for their fractions), and one JSON and
    one results block hold both runs' figures. Runs of another mode or card are refused in one line."""
    import scf.captioning.captioner as captioner

    bench = _load("benchmark")
    # the order of a full run: issue 8's targets first, captioning after the anchor it is compared with
    assert bench.requested_sections(set(bench.WHAT), bench.TRAIN_MODES) == [
        "matmul", "ifas.score", "ifas.train_frozen", "ifas.train_full", "ifas.train_lora", "ifas.train_qlora",
        "feed", "anchor.train", "anchor.score", "anchor.caption", "blip2.caption", "pipeline"]
    sizes = _small(bench, caption_batch=4, anchor_caption_batch=4, caption_check_rows=2)
    out = tmp_path / "bench.json"
    # run 1: the fast captioning path does not fit its budget (skipped, with the reason); scoring is measured
    monkeypatch.setitem(bench.NEED_S, "tiny", {"blip2.caption_fast": 10_000})
    first = bench.run("tiny", "cpu", what=("matmul", "score", "caption"), out=out, sizes=sizes, budget_s=5_000)
    assert "blip2.caption_fast" in first["skipped"] and set(first["blip2"]) == {"caption_reference"}

    monkeypatch.setitem(bench.NEED_S, "tiny", {})
    real_ifas, real_gen, ifas_sections, calls = bench.measure_ifas, captioner.generate_caption_ids, [], []
    monkeypatch.setattr(bench, "measure_ifas", lambda r, sections: (ifas_sections.append(set(sections)),
                                                                    real_ifas(r, sections)))

    def spy(model, pixel_values, input_ids, attention_mask, decoding, fast=True):
        calls.append((pixel_values.shape[0], fast))
        return real_gen(model, pixel_values, input_ids, attention_mask, decoding=decoding, fast=fast)

    monkeypatch.setattr(captioner, "generate_caption_ids", spy)
    merged = bench.run("tiny", "cpu", what=("matmul", "score", "train", "caption"), train_modes=("frozen",),
                       out=out, sizes=sizes, resume_from=out)
    assert merged["errors"] == {}
    assert ifas_sections == [{"matmul", "ifas.train_frozen", "blip2.caption"}]  # not ifas.score: measured
    assert [b for b, fast in calls if not fast] == [2] and {b for b, fast in calls if fast} == {4}  # fast + check
    assert merged["ifas"]["score"] == first["ifas"]["score"] and merged["ifas"]["train_frozen"]["value"] > 0
    assert merged["blip2"]["caption_reference"] == first["blip2"]["caption_reference"]
    assert merged["blip2"]["caption_fast"]["greedy_rows_identical_to_reference"] == 1.0
    assert merged["skipped"] == {} and merged["matmul"] == first["matmul"]  # the earlier skip is resolved
    meta = merged["meta"]
    assert meta["date"] == first["meta"]["date"] and meta["finished"] is True and len(meta["runs"]) == 2
    assert meta["runs"][1]["measured"] == ["blip2.caption_fast", "ifas.train_frozen", "ifas.train_frozen_reference",
                                           "matmul"]
    assert meta["requested"] == ["matmul", "ifas.score", "ifas.train_frozen", "blip2.caption"]
    assert json.loads(out.read_text())["ifas"].keys() == merged["ifas"].keys()  # --out may be the --resume-from file
    text = bench.results_markdown(merged)
    assert text.count("| measurement |") == 1 and "| scoring (images/s) |" in text
    assert "| training, LLM frozen (samples/s) |" in text and "| captioning BLIP-2, fast path (images/s) |" in text
    assert "Merged from 2 runs (`--resume-from`" in text and "Not measured" not in text

    # nothing left: nothing is built or measured, the merged file gains an empty run
    ifas_sections.clear()
    again = bench.run("tiny", "cpu", what=("score", "train", "caption"), train_modes=("frozen",), out=out,
                      sizes=sizes, resume_from=out)
    assert ifas_sections == [] and again["ifas"] == merged["ifas"] and again["meta"]["runs"][2]["measured"] == []

    other = tmp_path / "other.json"
    data = json.loads(out.read_text())
    data["meta"]["card"] = "NVIDIA H100 80GB HBM3"
    other.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="measured on NVIDIA H100 80GB HBM3 .*same kind of card"):
        bench.run("tiny", "cpu", what=("score",), sizes=sizes, resume_from=other)
    data["meta"].update(card=merged["meta"]["card"], mode="full")
    other.write_text(json.dumps(data))
    assert bench.main(["--mode", "tiny", "--device", "cpu", "--what", "score", "--resume-from", str(other)]) == 2
    assert bench.main(["--mode", "tiny", "--device", "cpu", "--resume-from", str(tmp_path / "none.json")]) == 2


def test_gpu_check_resume_and_only_complete_a_previous_run_in_one_rendered_page(tmp_path):
    """review17 L3: the second device call, `gpu_check.sh --resume --only ...`, measures only the sections the
    previous results lack, merges, renders one page from both, and leaves the merged file for a further call."""
    import os
    import subprocess

    bench = _load("benchmark")
    previous = tmp_path / "runs" / "benchmark.json"
    bench.run("tiny", "cpu", what=("matmul", "score"), out=previous)  # the sizes gpu_check.sh's tiny run uses
    out = tmp_path / "out"
    env = {"PATH": os.environ["PATH"], "OUT": str(out), "PYTHON": sys.executable, "HOME": str(tmp_path),
           "GPU_CHECK_PREVIOUS": str(previous), "BNB_DIR": str(tmp_path / "no-bnb")}
    root = TOOLS.parent
    proc = subprocess.run(["bash", "tools/gpu_check.sh", "--mode", "tiny", "--device", "cpu", "--iters", "1",
                           "--resume", "--only", "matmul,score,train", "--train-modes", "frozen"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0] == f"resuming {previous}: measuring only the sections it lacks"
    merged = json.loads((out / "benchmark.json").read_text())
    runs = merged["meta"]["runs"]
    assert len(runs) == 2 and runs[1]["measured"] == ["ifas.train_frozen", "ifas.train_frozen_reference", "matmul"]
    assert 0 < runs[1]["budget_s"] <= 330 - 15 - 20  # GPU_CHECK_LIMIT_S defaults to 330 s (review17 L3)
    command = runs[1]["command"].split()
    assert command.count("--mode") == 1 and "--what" in command and "--resume-from" in command
    assert set(merged["ifas"]) == {"score", "train_frozen", "train_frozen_reference"}
    page = (out / "benchmarks.md").read_text()
    assert page.count(bench.RESULTS_BEGIN) == 1 and "Merged from 2 runs" in page
    assert "| scoring (images/s) |" in page and "| training, LLM frozen (samples/s) |" in page
    assert json.loads(previous.read_text())["meta"]["runs"] == runs  # kept for a further --resume

    env["GPU_CHECK_PREVIOUS"] = str(tmp_path / "missing.json")
    proc = subprocess.run(["bash", "tools/gpu_check.sh", "--resume"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith(f"gpu_check.sh: --resume: no earlier results at {tmp_path}")


def test_resume_refuses_another_dtype_or_device_kind_and_labels_each_figure_with_its_run(tmp_path, capsys):
    """review18 M2 and L1: an fp32 run is not completed by a bf16 one (nor a CPU run by a CUDA one): one line,
    rc 2, the earlier file unchanged; each run's dtype and commit are recorded and shown. On the merged page the
    matmul ceiling names the run that measured it (not "run 1" when run 1 measured none), the anchor's figures
    name their run, and a ratio whose figure and anchor come from different runs is marked."""
    bench = _load("benchmark")
    sizes, out = _small(bench), tmp_path / "bench.json"
    first = bench.run("tiny", "cpu", what=("score",), out=out, sizes=sizes, dtype="fp32")  # no matmul, no anchor
    assert first["matmul"] is None or first["matmul"] == {}
    before = out.read_text()
    with pytest.raises(ValueError, match=r"measured in float32, this run is in bfloat16: merge only runs in the same "
                                         r"dtype \(pass the earlier run's --dtype\)"):
        bench.run("tiny", "cpu", what=("score",), sizes=sizes, dtype="bf16", resume_from=out)
    rc = bench.main(["--mode", "tiny", "--device", "cpu", "--dtype", "bf16", "--what", "score", "--resume-from",
                     str(out), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "measured in float32, this run is in bfloat16" in err[0]
    assert out.read_text() == before
    cuda = json.loads(before)
    cuda["meta"]["device"] = "cuda:0"
    (tmp_path / "cuda.json").write_text(json.dumps(cuda))
    with pytest.raises(ValueError, match="merge only runs on the same kind of card"):
        bench.run("tiny", "cpu", what=("score",), sizes=sizes, resume_from=tmp_path / "cuda.json")

    merged = bench.run("tiny", "cpu", what=("score", "anchor"), out=out, sizes=sizes, dtype="fp32", resume_from=out)
    runs = merged["meta"]["runs"]
    assert [r["dtype"] for r in runs] == ["float32", "float32"] and runs[0]["matmul_tflops"] is None
    assert runs[1]["measured"] == ["anchor.score", "matmul"] and all(r["git_commit"] for r in runs)
    page = bench.results_markdown(merged)
    assert "Measured matmul ceiling of run 2 (" in page and "of run 1" not in page
    assert "each figure's fraction of matmul uses its own run's ceiling" in page
    assert "same run" not in page
    assert "Anchor (each figure with the run that measured it): scoring " in page and "(run 2, " in page
    row = next(line for line in page.splitlines() if line.startswith("| scoring (images/s) |"))
    assert row.endswith("| 1 / 2 |") and row.split(" | ")[3].endswith("*")  # ratio of run 1 to run 2, marked
    assert "`*` the figure and its anchor were measured in different runs" in page
    assert f"run 1 of {runs[0]['date']} on {runs[0]['card']} (commit {runs[0]['git_commit']}, float32) " in page
    assert f"(commit {runs[1]['git_commit']}, float32), matmul " in page

    # one run's page keeps its labels: "same run", no runs column, no marks
    single = bench.results_markdown(bench.run("tiny", "cpu", what=("matmul", "score", "anchor"), sizes=sizes))
    assert "anchor (same run)" in single and "Anchor, same run: scoring" in single and "runs (figure" not in single
    assert "Measured matmul ceiling (" in single and "*" not in single.split("| scoring (images/s) |")[1].split("|")[3]


def test_feed_section_runs_the_clis_own_host_paths_and_renders_them_beside_the_kernels(tmp_path, monkeypatch):
    """review24 M1: ``feed`` measures images/s of ifas-eval's `_prepared_batches`, scf caption's `_decoded_batches`
    with `Blip2Captioner.prepare` and ifas-train's DataLoader (`Trainer._loader`) on this host, the model a no-op,
    and renders each beside the kernel figure it feeds, the ceiling being min(kernel, feed)."""
    import os

    import ifas_eval.scoring as scoring
    import scf.captioning.pipeline as pipeline
    from ifas_model.training.trainer import Trainer

    bench = _load("benchmark")
    calls = {}
    real_eval, real_cap, real_loader = scoring._prepared_batches, pipeline._decoded_batches, Trainer._loader

    def eval_spy(rows, raw, processor, bounds, threads, pin=False):
        calls["eval"] = (len(bounds), threads, pin, processor.image_processor.crop_size)
        return real_eval(rows, raw, processor, bounds, threads, pin)

    def cap_spy(batches, threads, prepare=None):
        calls["caption"] = (len(batches), threads, getattr(prepare, "__name__", None))
        return real_cap(batches, threads, prepare)

    def loader_spy(self, dataset, batch_sampler, collate):
        calls["train"] = (self.config.num_workers, len(dataset), batch_sampler.batch_size)
        return real_loader(self, dataset, batch_sampler, collate)

    monkeypatch.setattr(scoring, "_prepared_batches", eval_spy)
    monkeypatch.setattr(pipeline, "_decoded_batches", cap_spy)
    monkeypatch.setattr(Trainer, "_loader", loader_spy)
    results = bench.run("tiny", "cpu", what=("feed",), out=tmp_path / "b.json")
    assert results["errors"] == {} and results["skipped"] == {}
    s = bench.TINY_SIZES
    # the real paths ran, with --mode tiny's 2 threads and ifas-train's default --num-workers (2)
    assert calls == {"eval": (3, 2, False, {"height": 224, "width": 224}), "caption": (3, 2, "prepare"),
                     "train": (2, 4 * s.train_batch, s.train_batch)}
    feed = json.loads((tmp_path / "b.json").read_text())["feed"]
    assert set(feed) == {"eval", "caption", "train"}
    for path, batch in (("eval", s.score_batch), ("caption", s.caption_batch), ("train", s.train_batch)):
        fig = feed[path]
        assert fig["value"] > 0 and fig["steady_value"] > 0 and fig["unit"] == "images/s", path
        assert fig["batch"] == batch and fig["cpu_count"] == os.cpu_count() and fig["pinned"] is False, path
        assert fig["images"] == batch * (4 if path == "train" else 3) and fig["seconds"] > fig["first_batch_s"] > 0
        assert 50 < fig["png_kib_mean"] < 150, path  # PNG crops of about scf ingest's size, not flat images
    assert feed["eval"]["threads"] == feed["caption"]["threads"] == 2 and feed["train"]["workers"] == 2
    assert feed["caption"]["prepare_in"] == "prefetch threads"
    assert bench.measured_sections(results) == {"feed"}

    text = bench.results_markdown(results)
    assert "Host feed on the run's host" in text and "a path's ceiling is min(kernel, feed)" in text
    assert f"| ifas-eval scoring input (`_prepared_batches`) | {bench._fmt(feed['eval']['value'])} | 8 | 2 threads | " \
           "`ifas.score` | - | - | no kernel figure |" in text
    assert "| 4 | 2 DataLoader workers | `ifas.train_frozen` |" in text
    # beside kernel figures of the same run: the ceiling is the smaller, and the row says which limits the path
    results["ifas"] = {"score": {"value": 1e9, "unit": "images/s"}, "train_frozen": {"value": 1e-3, "unit": "samples/s"}}
    results["feed_vs_kernel"] = bench.feed_rows(results)
    rows = {row["path"]: row for row in results["feed_vs_kernel"]}
    assert rows["eval"]["ceiling"] == feed["eval"]["value"] and rows["eval"]["limited_by"] == "host feed"
    assert rows["train"]["ceiling"] == 1e-3 and rows["train"]["limited_by"] == "kernel"
    assert rows["caption"]["ceiling"] is None and rows["caption"]["kernel_key"] == "blip2.caption_fast"
    text = bench.results_markdown(results)
    assert "| `ifas.score` | 1e+09 | " in text and "| host feed |" in text and "| 0.001 | 0.001 | kernel |" in text


def test_feed_without_datasets_is_skipped_and_a_failing_path_keeps_the_others(tmp_path, monkeypatch):
    """A missing datasets skips the section with the reason; one path's failure is recorded under its own key
    (feed.<path>), the other paths' figures stand, and the report names what failed."""
    bench = _load("benchmark")
    monkeypatch.setattr(bench, "_import_error", lambda lib: "not installed" if lib == "datasets" else None)
    results = bench.run("tiny", "cpu", what=("feed",), out=tmp_path / "a.json")
    assert results["feed"] == {} and results["errors"] == {}
    assert results["skipped"]["feed"].startswith("cannot import datasets: not installed")
    assert "`feed.eval`, `feed.caption`, `feed.train`: skipped: cannot import datasets" in bench.results_markdown(results)

    monkeypatch.undo()
    monkeypatch.setattr(bench, "_feed_eval", lambda *a: 1 / 0)
    monkeypatch.setattr(bench, "_feed_train", lambda *a: (_ for _ in ()).throw(RuntimeError("no workers")))
    results = bench.run("tiny", "cpu", what=("feed",), out=tmp_path / "b.json")
    assert set(results["feed"]) == {"caption"} and set(results["errors"]) == {"feed.eval", "feed.train"}
    text = bench.results_markdown(results)
    assert "- `feed.eval`: failed: ZeroDivisionError: division by zero" in text
    assert "- `feed.train`: failed: RuntimeError: no workers" in text and "| scf caption input" in text
    assert bench.main(["--render", str(tmp_path / "b.json")]) == 0


def test_feed_is_resumed_and_merged_like_the_other_sections():
    """A run that measured feed is not measured again by --resume-from; a later run's figures merge beside it,
    and a resumed run that lacks only feed does not measure the matmul ceiling again (feed has no fraction)."""
    bench = _load("benchmark")
    fig = {"value": 900.0, "unit": "images/s", "batch": 256, "threads": 8, "cpu_count": 16}
    meta = {"mode": "full", "device": "cuda:0", "card": "NVIDIA H200 (renderer test fixture)", "dtype": "bfloat16",
            "date": "fixture", "requested": ["feed"], "finished": True, "python": "3.12", "torch": "2.11",
            "transformers": "5.17", "command": "fixture"}
    previous = {"meta": meta, "matmul": None, "pipeline": None, "ifas": {}, "blip2": {}, "anchor": {},
                "feed": {"eval": fig, "caption": {**fig, "value": 800.0}, "train": {**fig, "value": 700.0,
                                                                                  "workers": 2, "threads": None}},
                "skipped": {}, "errors": {"feed.train": "old failure"}}
    assert "feed" in bench.measured_sections(previous)
    assert bench.requested_sections({"feed", "score"}, bench.TRAIN_MODES) == ["ifas.score", "feed"]
    current = {"meta": {**meta, "requested": ["ifas.score"], "date": "later"}, "matmul": None, "pipeline": None,
               "ifas": {"score": {"value": 1000.0, "unit": "images/s", "batch": 256}}, "blip2": {}, "anchor": {},
               "feed": {}, "skipped": {}, "errors": {}}
    merged = bench.merge_results(previous, current, ["ifas.score", "feed"])
    assert merged["feed"] == previous["feed"] and merged["errors"] == {}  # the attempted section's old error goes
    assert merged["meta"]["runs"][0]["measured"] == ["feed.caption", "feed.eval", "feed.train"]
    rows = {row["path"]: row for row in bench.feed_rows(merged)}
    assert rows["eval"]["ceiling"] == 900.0 and rows["eval"]["limited_by"] == "host feed"
    text = bench.results_markdown(merged)
    assert "(the runs column: feed / kernel)" in text and "| 1e+03 | 900 | host feed | 1 / 2 |" in text
