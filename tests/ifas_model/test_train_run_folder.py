"""One run per run folder (review16 M1, L2): a second ifas-train on a held --output, or on one it cannot write,
is refused in one line before the model is built; a run killed while holding it leaves nothing that blocks the
rerun, which resumes. Under torchrun every rank exits with the line; ranks that see different folders under one
--output (node-local folders on several nodes, M3) are refused too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from _train_corpus import build_corpus
from _train_corpus import invoke_train as _invoke
from _train_corpus import tiny_run_args as _args


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus") / "vqa", splits=("train",), max_rows=16)


def _error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return " ".join(errors[0].split())


def test_a_second_run_on_a_held_output_is_refused_in_one_line_before_the_model_is_built(corpus, tmp_path, hold_folder):
    out = tmp_path / "run"
    holder = hold_folder(out, "ifas-train")
    try:
        started = time.perf_counter()
        result = _invoke(*_args(corpus, out))
        elapsed = time.perf_counter() - started
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    line = _error_line(result.output)
    assert line.startswith(f"Error: {out} is in use by ifas-train (pid {holder.pid} on ")
    assert line.endswith("wait for it to end or choose another folder")
    assert "built model" not in result.output and elapsed < 20  # refused before the model (or corpus) is loaded
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing of the run was written


def test_a_run_killed_while_holding_the_folder_blocks_nothing_and_the_rerun_resumes(corpus, tmp_path, hold_folder):
    out = tmp_path / "run"
    first = _invoke(*_args(corpus, out, "--stop-after-steps", "2"))
    assert first.exit_code == 0, first.output
    holder = hold_folder(out, "ifas-train")  # a later session of the run, killed (-9) while it holds the folder
    assert _invoke(*_args(corpus, out)).exit_code == 1
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    result = _invoke(*_args(corpus, out))
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output and "step-00000002" in result.output
    assert "done" in result.output and (out / "final" / "model.safetensors").is_file()
    again = _invoke(*_args(corpus, out))  # the finished run: still "already finished", the lock released
    assert again.exit_code == 0 and "already finished" in again.output, again.output


def test_an_output_that_cannot_be_created_is_one_line_before_the_model_is_built(corpus, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    result = _invoke(*_args(corpus, blocker / "run"))
    assert result.exit_code == 1
    line = _error_line(result.output)
    assert line.startswith(f"Error: {blocker / 'run'}: cannot create or write to this folder (")
    assert "built model" not in result.output


def test_a_run_refused_for_a_mistyped_dataset_leaves_no_new_folder(corpus, tmp_path):
    out = tmp_path / "run"
    result = _invoke(*_args(tmp_path / "no-such-corpus", out))
    assert result.exit_code == 1
    assert "no-such-corpus" in _error_line(result.output)
    assert not out.exists()  # the folder it created held only its .lock: removed again


def _torchrun(script_args, *, cwd=None, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *script_args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


@pytest.mark.slow
def test_under_torchrun_every_rank_exits_with_the_line_when_the_folder_is_held(corpus, tmp_path, hold_folder):
    out = tmp_path / "run"
    holder = hold_folder(out, "ifas-train")
    try:
        started = time.perf_counter()
        proc = _torchrun(["-m", "ifas_model.cli", *map(str, _args(corpus, out))])
        elapsed = time.perf_counter() - started
    finally:
        holder.kill()
        holder.wait()
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = [" ".join(line.split()) for line in output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 2 and len(set(lines)) == 1, output  # rank 0 and rank 1: the same line, no hang
    assert f"{out} is in use by ifas-train (pid {holder.pid}" in lines[0]
    assert "built model" not in output and elapsed < 120
    assert output.count("Traceback") == 1 and "ChildFailedError" in output  # torchrun's own report only
    assert "process group: rank 0 of 2 (gloo, timeout 2:00:00)" in " ".join(output.split())  # review16 M2


WRAPPER = """import os, sys
# each rank in its own working folder: a relative --output names a different folder per rank, as a node-local
# --output does on several nodes
os.chdir(os.path.join(sys.argv.pop(1), "rank" + os.environ["RANK"]))
import ifas_model.training.distributed as distributed
distributed.SHARED_PROBE_WAIT_S = 2.0  # not the minute a refused start waits for a slow NFS
from ifas_model.cli import main
main()
"""


@pytest.mark.slow
def test_under_torchrun_ranks_that_see_different_folders_are_refused(corpus, tmp_path):
    for rank in (0, 1):
        (tmp_path / f"rank{rank}").mkdir()
    script = tmp_path / "wrap.py"
    script.write_text(WRAPPER, encoding="utf-8")
    proc = _torchrun([str(script), str(tmp_path), *map(str, _args(corpus, "run"))])
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = {" ".join(line.split()) for line in output.splitlines() if line.startswith("Error: ")}
    assert len(lines) == 1, output
    line = lines.pop()
    assert line.startswith("Error: run is not the same folder on every process: rank(s) 1 (on ")
    assert "wrote there (looked for 2 s); " in line
    assert line.endswith("a run on several nodes needs --output on a file system that every node shares")
    assert "built model" not in output
    assert not list((tmp_path / "rank0" / "run").glob(".ifas-train-shared-*"))  # the probe is removed


def test_the_shared_folder_probe_lists_the_folder_before_each_new_look(tmp_path, monkeypatch):
    """review18 L2: a file another node wrote may show up only after the folder is listed again (NFS keeps a
    cached "no such file" up to 60 s): each retry lists the folder; a missing file is reported after the wait."""
    from ifas_model.training import distributed
    from scf import locking

    assert distributed.SHARED_PROBE_WAIT_S >= 60  # longer than NFS's acdirmax default
    probe = tmp_path / ".ifas-train-shared-x"
    listed = []

    def listdir(path):
        listed.append(path)
        if len(listed) == 2:  # the second listing "revalidates" the folder: the file is now visible
            probe.write_text("node1", encoding="utf-8")
        return []

    monkeypatch.setattr(locking.os, "listdir", listdir)
    assert locking.wait_for_file(probe, seconds=30) is True
    assert listed == [tmp_path, tmp_path]
    started = time.monotonic()
    assert locking.wait_for_file(tmp_path / "never", seconds=0.6) is False
    assert 0.5 <= time.monotonic() - started < 5


def test_deterministic_is_recorded_changes_nothing_on_cpu_and_may_change_on_resume(corpus, tmp_path):
    """review21 L1: --deterministic asks torch for deterministic GPU kernels; on the CPU (deterministic already)
    the weights are those of a run without it, and a resume may turn it on or off."""
    import torch
    import yaml

    try:
        plain = _invoke(*_args(corpus, tmp_path / "plain"))
        assert plain.exit_code == 0, plain.output
        det = _invoke(*_args(corpus, tmp_path / "det", "--deterministic", "--stop-after-steps", "2"))
        assert det.exit_code == 0, det.output
        assert torch.are_deterministic_algorithms_enabled()
        assert "deterministic kernels on" in " ".join(det.output.split())
        assert yaml.safe_load((tmp_path / "det" / "config.yaml").read_text())["deterministic"] is True
    finally:
        torch.use_deterministic_algorithms(False)  # process-wide: leave the other tests as they were
    resumed = _invoke(*_args(corpus, tmp_path / "det"))  # without the flag: not a changed setting
    assert resumed.exit_code == 0 and "resumed from" in resumed.output, resumed.output
    from safetensors.torch import load_file

    a = load_file(tmp_path / "plain" / "final" / "model.safetensors")
    b = load_file(tmp_path / "det" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_only_the_newest_checkpoints_are_kept(corpus, tmp_path):
    """review26 H1: the pruning of old checkpoints sat after a `raise` and never ran: a run kept every one."""
    result = _invoke(*_args(corpus, tmp_path / "run", "--keep-checkpoints", "2"))  # 4 steps, one per step
    assert result.exit_code == 0, result.output
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept == ["step-00000003", "step-00000004"]
