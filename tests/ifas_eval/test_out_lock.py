"""One ifas-eval per output folder (review 16 M1), and the several-GPU recipe that follows from it (L5)."""

from __future__ import annotations

import json
import os
import shutil

from click.testing import CliRunner


def _last(res) -> str:
    return res.stderr.strip().splitlines()[-1]


def test_a_second_run_on_the_same_out_is_refused_while_the_first_runs(tiny_ckpt, tmp_path, monkeypatch):
    """The second run starts while the first is scoring (in process): refused in one line, nothing written."""
    from ifas_eval import runner
    from ifas_eval.cli import main

    monkeypatch.setenv("IFAS_EVAL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "eval"
    first = ["--protocol", "sample", "--checkpoint", f"sample-domain-a={tiny_ckpt}", "--setting", "sample-domain-a",
             "--out", str(out), "--no-report"]
    second = [*first[:2], "--checkpoint", f"sample-domain-b={tiny_ckpt}", "--setting", "sample-domain-b",
              "--out", str(out), "--no-report"]
    seen = {}
    real = runner.evaluate_protocol

    def first_run(*args, **kwargs):  # the first run's scoring; the second ifas-eval starts meanwhile
        seen["second"] = CliRunner().invoke(main, second)
        seen["files"] = sorted(p.name for p in out.iterdir())
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "evaluate_protocol", first_run)
    res = CliRunner().invoke(main, first)
    assert res.exit_code == 0, res.output
    refused = seen["second"]
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    line = _last(refused)
    assert line.startswith(f"Error: {out} is in use by ifas-eval (pid {os.getpid()} on ")
    assert line.endswith("to use several GPUs, give each run its own --out (docs/evaluation.md, 'Several GPUs'))")
    assert seen["files"] == [".lock"]  # the second run wrote nothing, not even run.json
    # the first run's tables and run.json are its own
    assert json.loads((out / "run.json").read_text())["checkpoints"] == {"sample-domain-a": [str(tiny_ckpt)]}
    assert [r["setting"] for r in json.loads((out / "results.json").read_text())["results"]] == ["sample-domain-a"]


def test_a_lock_held_by_another_process_refuses_both_modes(tmp_path, hold_folder):
    from ifas_eval.cli import main

    out = tmp_path / "eval"
    holder = hold_folder(out, "ifas-eval")
    try:
        scores = tmp_path / "s.csv"
        scores.write_text("video_id,label,score\nv1,1,0.9\nv2,0,0.2\n")
        res = CliRunner().invoke(main, ["--scores", str(scores), "--out", str(out)])
        assert res.exit_code == 1
        assert _last(res).startswith(f"Error: {out} is in use by ifas-eval (pid {holder.pid} on ")
        res = CliRunner().invoke(main, ["--protocol", "sample", "--checkpoint", f"sample-domain-a={tmp_path}",
                                        "--out", str(out)])
        assert res.exit_code == 1  # (the checkpoint check comes first: cheap checks before the lock)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    finally:
        holder.kill()
        holder.wait()
    res = CliRunner().invoke(main, ["--scores", str(scores), "--out", str(out)])  # released with the process
    assert res.exit_code == 0 and (out / "results.csv").exists()


def test_a_failed_run_leaves_no_new_folder(tiny_ckpt, tmp_path):
    from ifas_eval.cli import main

    res = CliRunner().invoke(main, ["--protocol", "mcio", "--checkpoint", f"M={tiny_ckpt}", "--data",
                                    str(tmp_path / "missing"), "--out", str(tmp_path / "eval")])
    assert res.exit_code == 1 and "dataset not found" in _last(res)
    assert not (tmp_path / "eval").exists()


def test_one_run_per_gpu_then_one_call_assembles_the_table_from_cached_scores(tiny_ckpt, tmp_path, monkeypatch):
    """docs/evaluation.md 'Several GPUs': each setting into its own --out, copy scores/, one combining call."""
    from ifas_eval.cli import main
    from ifas_model.modeling import IFASForConditionalGeneration

    monkeypatch.setenv("IFAS_EVAL_CACHE", str(tmp_path / "cache"))
    ckpts = {}
    for name in ("sample-domain-a", "sample-domain-b"):  # one checkpoint per leave-one-out setting
        ckpts[name] = tmp_path / "runs" / name / "final"
        shutil.copytree(tiny_ckpt, ckpts[name])
    common = ["--protocol", "sample", "--no-report", "--device", "cpu"]
    for name, ck in ckpts.items():  # on a GPU machine: --device cuda:N, one process per GPU, at the same time
        res = CliRunner().invoke(main, [*common, "--setting", name, "--checkpoint", f"{name}={ck}",
                                        "--out", str(tmp_path / f"eval-{name}")])
        assert res.exit_code == 0, res.output
    combined = tmp_path / "eval-all"
    combined.mkdir()
    for name in ckpts:  # cp -r eval-<setting>/scores eval-all/
        shutil.copytree(tmp_path / f"eval-{name}" / "scores", combined / "scores", dirs_exist_ok=True)

    def no_scoring(*args, **kwargs):
        raise AssertionError("the combining call scored images again")

    monkeypatch.setattr(IFASForConditionalGeneration, "score", no_scoring)
    res = CliRunner().invoke(main, [*common, *(f"--checkpoint={n}={ck}" for n, ck in ckpts.items()),
                                    "--out", str(combined)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    log = " ".join(res.stderr.split())
    assert log.count("reusing score files computed with the same checkpoint files") == 2
    assert "sample-domain-a (cached)" in log and "sample-domain-b (cached)" in log
    results = json.loads((combined / "results.json").read_text())["results"]
    assert sorted(r["setting"] for r in results) == ["sample-domain-a", "sample-domain-b"]
    assert not any(r.get("seen_domain") for r in results)
    for r in results:  # the same numbers as each GPU's own run
        own = json.loads((tmp_path / f"eval-{r['setting']}" / "results.json").read_text())["results"][0]
        assert (r["hter"], r["auc"]) == (own["hter"], own["auc"])
