"""A full disk (ENOSPC) in the middle of ``ifas-eval``: one line naming the file, nothing torn or mixed, and the
same command resumes once space is freed (review25 M4, M5, M6, L1, L3)."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil

import pytest
from click.testing import CliRunner


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(pattern, nth=1, after=0)``: the ``nth`` open for writing of a path matching ``pattern``
    writes ``after`` bytes, then fails with ENOSPC (as a write on a full disk does: the error names no file)."""
    real_open = io.open
    state = {"pattern": None, "nth": 1, "after": 0, "count": 0}

    class Full:
        def __init__(self, fh):
            self._fh, self._left = fh, state["after"]

        def write(self, data):
            if len(data) <= self._left:
                self._left -= len(data)
                return self._fh.write(data)
            self._fh.write(data[: self._left])
            self._left = 0
            self._fh.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    def fake_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if (state["pattern"] and isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wa+")
                and re.search(state["pattern"], os.fspath(file))):
            state["count"] += 1
            if state["count"] == state["nth"]:
                return Full(fh)
        return fh

    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr("builtins.open", fake_open)

    def arm(pattern: str | None, nth: int = 1, after: int = 0) -> None:
        state.update(pattern=pattern, nth=nth, after=after, count=0)

    return arm


def _args(ckpt, out, *extra):
    return ["--protocol", "sample", "--setting", "sample-domain-a", "--checkpoint", f"sample-domain-a={ckpt}",
            "--out", str(out), "--batch-size", "8", *extra]


def _last(res):
    return res.output.strip().splitlines()[-1]


def _hidden_temporaries(folder):
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def test_full_disk_while_scoring_says_the_file_and_the_rerun_resumes_with_the_same_scores(tiny_ckpt, tmp_path,
                                                                                         full_disk):
    from ifas_eval.cli import main

    whole = tmp_path / "whole"
    assert CliRunner().invoke(main, _args(tiny_ckpt, whole, "--no-report")).exit_code == 0
    out = tmp_path / "eval"
    full_disk(r"\.csv\.partial$", nth=3, after=100)  # header, batch 1; batch 2 is torn after 100 bytes
    res = CliRunner().invoke(main, _args(tiny_ckpt, out, "--no-report"))
    partial = out / "scores" / "sample-domain-a" / "tiny-final" / "sample-domain-a.csv.partial"
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert _last(res) == (f"Error: cannot write {partial} (No space left on device): finished score files and the "
                          f"rows scored so far (*.csv.partial) in {out / 'scores'} are kept; free space and rerun "
                          "the same command: it resumes from them")
    assert partial.read_bytes().count(b"\n") == 1 + 8  # header + batch 1 + a torn row of batch 2

    full_disk(None)  # space freed
    res = CliRunner().invoke(main, _args(tiny_ckpt, out, "--no-report"))
    assert res.exit_code == 0, res.output
    assert "resuming after 8 of 30 frames" in " ".join(res.output.split())
    # the torn batch was scored again whole: the same batches, byte-identical scores and line ends (\r\n)
    done = partial.with_name("sample-domain-a.csv").read_bytes()
    assert done == (whole / "scores" / "sample-domain-a" / "tiny-final" / "sample-domain-a.csv").read_bytes()
    assert done.count(b"\r\n") == done.count(b"\n") == 31
    assert (out / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()


def test_count_rows_cuts_back_to_whole_batches_at_the_byte_offset(tmp_path):
    from ifas_eval import scorefile

    path = tmp_path / "t.csv.partial"
    scorefile.write_header(path)
    scorefile.append_rows(path, [(f"v{i}", 1, 0.5, "live", 0, f"p{i}") for i in range(10)])
    whole = path.read_bytes()
    rows = whole.split(b"\r\n")
    path.write_bytes(whole + b"v10,1,0.4")  # a torn 11th row
    assert scorefile.count_rows(path, batch_size=4) == 8
    assert path.read_bytes() == b"\r\n".join(rows[:9]) + b"\r\n"  # header + 8 rows, byte for byte
    assert scorefile.count_rows(path, batch_size=4) == 8 and scorefile.count_rows(path) == 8
    path.write_bytes(b"video_id,la")  # not even a header
    assert scorefile.count_rows(path, batch_size=4) == 0 and path.read_bytes() == b""


def test_a_failed_result_write_leaves_the_previous_four_files_as_they_were(tiny_ckpt, tmp_path, full_disk):
    from ifas_eval.cli import main

    out = tmp_path / "eval"
    assert CliRunner().invoke(main, _args(tiny_ckpt, out, "--no-report")).exit_code == 0
    names = ("results.md", "results.csv", "results.json", "run.json")
    before = {n: (out / n).read_bytes() for n in names}
    for failing in ("results.csv", "results.json", "run.json"):
        full_disk(rf"\.{re.escape(failing)}\.\d+\.tmp$", after=10)
        res = CliRunner().invoke(main, _args(tiny_ckpt, out, "--no-report", "--threshold", "0.3"))
        assert res.exit_code == 1 and "Traceback" not in res.output
        assert _last(res).startswith(f"Error: cannot write {out / failing} (No space left on device); results.md, "
                                     "results.csv, results.json and run.json are still the previous run's (none "
                                     "was replaced): finished score files")
        assert {n: (out / n).read_bytes() for n in names} == before, failing
        assert _hidden_temporaries(out) == []
    full_disk(None)
    res = CliRunner().invoke(main, _args(tiny_ckpt, out, "--no-report", "--threshold", "0.3"))
    assert res.exit_code == 0, res.output
    assert json.loads((out / "run.json").read_text())["threshold"] == 0.3
    assert json.loads((out / "results.json").read_text())["threshold"] == 0.3


def test_a_full_disk_in_the_report_names_its_file_and_says_the_tables_are_current(tiny_ckpt, tmp_path, full_disk):
    from ifas_eval.cli import main

    out = tmp_path / "eval"
    full_disk(r"\.index\.html\.\d+\.tmp$", after=50)
    res = CliRunner().invoke(main, _args(tiny_ckpt, out, "--explain", "0"))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert _last(res).startswith(f"Error: cannot write {out / 'report' / 'index.html'} (No space left on device);"
                                 " the report is incomplete; the tables written before it (results.*, run.json) "
                                 "are this run's: finished score files")
    assert not (out / "report" / "index.html").exists() and _hidden_temporaries(out) == []
    assert json.loads((out / "run.json").read_text())["checkpoints"]


def test_score_file_mode_on_a_full_disk(tmp_path, full_disk):
    from ifas_eval.cli import main
    from ifas_eval.metrics import ScoreSet
    from ifas_eval.scorefile import write_scores

    scores = write_scores(tmp_path / "s.csv", ScoreSet("s", [0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0], ["a", "b", "c", "d"]))
    out = tmp_path / "tables"
    full_disk(r"\.results\.json\.\d+\.tmp$")
    res = CliRunner().invoke(main, ["--scores", str(scores), "--out", str(out)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert _last(res) == (f"Error: cannot write {out / 'results.json'} (No space left on device); results.md, "
                          "results.csv, results.json and run.json are still the previous run's (none was "
                          "replaced): the score files given are read only, never changed; free space and rerun "
                          "the same command")
    assert not out.exists() or not [p for p in out.rglob("*") if p.name != ".lock"]  # nothing half-written


def test_write_problem_leaves_other_errors_alone(tmp_path):
    from ifas_eval.outputs import OutputWriteError, write_problem

    out = tmp_path / "eval"
    kept = "k"
    # a write that names no file (pyarrow, a datasets cache copy): the folders it may be in
    assert write_problem(OSError(errno.EDQUOT, "Disk quota exceeded"), out, kept=kept, resumes=True) == (
        f"cannot write {out} (or $HF_DATASETS_CACHE or $TMPDIR) (Disk quota exceeded): k; free space and rerun the "
        "same command: it resumes from them")
    # inside --out, named: said as a write problem; an I/O error reading an input: left as it is
    assert write_problem(OSError(errno.EROFS, "Read-only file system", str(out / "x")), out, kept=kept,
                         resumes=False) == f"cannot write {out / 'x'} (Read-only file system): k; make it writable " \
                                           "and rerun the same command"
    assert write_problem(OSError(errno.EIO, "Input/output error", str(tmp_path / "in.parquet")), out, kept=kept,
                         resumes=True) is None
    assert write_problem(OSError(errno.EIO, "Input/output error"), out, kept=kept, resumes=True) is None
    assert write_problem(FileNotFoundError(errno.ENOENT, "No such file", str(out / "x")), out, kept=kept,
                         resumes=True) is None
    assert write_problem(OutputWriteError(errno.EIO, "Input/output error", str(out / "x")), out, kept=kept,
                         resumes=True).endswith("k; once the disk works again, rerun the same command: it resumes "
                                                "from them")


@pytest.fixture
def cut_short_run(tiny_ckpt, tmp_path):
    """An ifas-train run folder whose final/model.safetensors was cut in half by a full disk."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copytree(tiny_ckpt, run / "final")
    weights = run / "final" / "model.safetensors"
    size = weights.stat().st_size
    os.truncate(weights, size // 2)
    return run, size


def test_a_cut_short_checkpoint_is_one_line_in_ifas_eval_and_ifas_predict(cut_short_run, tmp_path):
    from ifas_eval.cli import main, predict

    run, size = cut_short_run
    expected = (f"Error: checkpoint {run / 'final'}: model.safetensors is cut short ({size // 2} of {size} bytes) "
                f"(a full disk or a partial copy?): rerun the same ifas-train command for run {run}: it writes "
                "only final/ again")
    res = CliRunner().invoke(main, _args(run / "final", tmp_path / "eval"))
    assert res.exit_code == 1 and "Traceback" not in res.output and _last(res) == expected
    res = CliRunner().invoke(predict, [str(tmp_path), "--checkpoint", str(run / "final"), "--no-face-detection"])
    assert res.exit_code == 1 and "Traceback" not in res.output and _last(res) == expected


def test_a_git_lfs_pointer_in_place_of_the_weights_says_git_lfs_pull(tiny_ckpt, tmp_path):
    """review26 L2: a checkpoint cloned without git-lfs was "cut short (135 bytes; its header alone needs
    2336927755350992254)"; it now says what it is."""
    from ifas_eval.cli import main

    ckpt = tmp_path / "clone"
    shutil.copytree(tiny_ckpt, ckpt)
    (ckpt / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64
                                             + "\nsize 123456789\n")
    res = CliRunner().invoke(main, _args(ckpt, tmp_path / "eval"))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert _last(res) == (f"Error: checkpoint {ckpt}: model.safetensors is a Git LFS pointer, not the weights (a "
                          "clone without git-lfs): run `git lfs pull` in that repository, or download it with "
                          "`hf download`")


def test_load_checkpoint_names_the_checkpoint_for_any_safetensors_error(cut_short_run, monkeypatch):
    """Past the header check (a Hub snapshot, a corruption the sizes do not show): safetensors' own error,
    neither an OSError nor a ValueError, becomes a ValueError naming the checkpoint."""
    from ifas_eval import scoring

    run, _ = cut_short_run
    monkeypatch.setattr(scoring, "safetensors_problem", lambda path: None)
    with pytest.raises(ValueError, match=rf"^checkpoint {re.escape(str(run / 'final'))}: its safetensors weights "
                                         r"cannot be read \(.+\) \(a full disk or a partial copy\?\): rerun the "
                                         "same ifas-train command"):
        scoring.load_checkpoint(run / "final", "cpu")


def test_a_read_error_in_the_report_step_says_what_could_not_be_read(tiny_ckpt, tmp_path, monkeypatch):
    """review26 M3: an EIO reading the benchmark for --explain (or the Hub unreachable while the checkpoint
    loads) is a read, not "cannot write <input>" nor "cannot write .../report"."""
    from ifas_eval import runner
    from ifas_eval.cli import main

    out = tmp_path / "eval"
    cache_file = tmp_path / "hfcache" / "bench" / "data-00000.arrow"

    def eio(rows, idx):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(cache_file))

    monkeypatch.setattr(runner, "_row_images", eio)
    res = CliRunner().invoke(main, _args(tiny_ckpt, out, "--explain", "1"))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert _last(res) == (f"Error: cannot read {cache_file} (Input/output error) for the report (--explain); the "
                          "report is incomplete; the tables written before it (results.*, run.json) are this "
                          "run's")
    assert json.loads((out / "run.json").read_text())["checkpoints"] and "cannot write" not in res.output

    from ifas_eval import scoring

    real_load, loads = scoring.load_checkpoint, []

    def offline(*args, **kwargs):  # scoring loads it; the report's load finds the Hub gone (transformers'
        loads.append(args)         # OSError, no errno)
        if len(loads) > 1:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files of org/ckpt")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(scoring, "load_checkpoint", offline)
    res = CliRunner().invoke(main, _args(tiny_ckpt, out, "--explain", "1"))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert _last(res) == ("Error: cannot read what the report (--explain) needs: We couldn't connect to "
                          "'https://huggingface.co' to load the files of org/ckpt; the report is incomplete; the "
                          "tables written before it (results.*, run.json) are this run's")


def test_a_full_disk_writing_an_explained_image_names_it(tiny_ckpt, tmp_path, monkeypatch):
    """The writes of the report (here an --explain crop, ENOSPC) stay write failures naming the file."""
    from PIL import Image

    from ifas_eval.cli import main

    real_save = Image.Image.save

    def full(self, fp, *args, **kwargs):
        if str(fp).endswith(".jpg"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", full)
    out = tmp_path / "eval"
    res = CliRunner().invoke(main, _args(tiny_ckpt, out, "--explain", "1", "--max-new-tokens", "2"))
    assert res.exit_code == 1 and "Traceback" not in res.output
    image = out / "report" / "images" / "sample-domain-a_00.jpg"
    assert _last(res).startswith(f"Error: cannot write {image} (No space left on device); the report is "
                                 "incomplete; the tables written before it (results.*, run.json) are this run's: "
                                 "finished score files")


def test_a_run_removes_the_temporaries_a_killed_run_left_and_nothing_else(tiny_ckpt, tmp_path, monkeypatch):
    """review26 L3: a kill between a temporary's write and its rename leaves ``.<name>.<pid>.tmp``; the next
    run (holding the folder's lock) removes those of ifas-eval's own files, and only those."""
    from ifas_eval.cli import main
    from ifas_eval.scoring import HASH_CACHE_ENV

    monkeypatch.setenv(HASH_CACHE_ENV, str(tmp_path / "cache"))
    out = tmp_path / "eval"
    assert CliRunner().invoke(main, _args(tiny_ckpt, out, "--explain", "0")).exit_code == 0
    dead = 2 ** 22 + 7  # above Linux's pid_max: no such process
    score_dir = out / "scores" / "sample-domain-a" / "tiny-final"
    stale = [out / f".results.md.{dead}.tmp", out / f".run.json.{dead}.tmp",
             score_dir / f".scored_with.json.{dead}.tmp", out / "report" / f".index.html.{dead}.tmp",
             out / "report" / f".roc_sample-domain-a.png.{dead}.tmp",
             out / "report" / f".attack_types.csv.{dead}.tmp", tmp_path / "cache" / f".fingerprints.json.{dead}.tmp"]
    others = [out / f".notes.txt.{dead}.tmp", out / f"results.md.{dead}.tmp", out / ".results.md.tmp",
              out / f".results.md.{os.getppid()}.tmp",  # a live process's: never touched
              out / "report" / "images" / f".x.jpg.{dead}.tmp", out / "mine" / f".results.md.{dead}.tmp"]
    for path in stale + others:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    (tmp_path / "cache" / "fingerprints.json").unlink()  # killed before its rename: this run writes it again
    res = CliRunner().invoke(main, _args(tiny_ckpt, out, "--explain", "0"))
    assert res.exit_code == 0, res.output
    assert [p for p in stale if p.exists()] == []
    assert [p for p in others if not p.exists()] == []


def test_sweep_temporaries_takes_only_dead_processes_plain_files_of_the_given_names(tmp_path):
    from ifas_eval.outputs import REPORT_NAMES, sweep_stale_temporaries, sweep_temporaries

    dead = 2 ** 22 + 7
    (tmp_path / f".index.html.{dead}.tmp").mkdir()  # a folder so named: not a temporary of ours
    (tmp_path / f".hist_a.png.{os.getpid()}.tmp").write_text("mine, being written")
    (tmp_path / "target").write_text("kept")
    (tmp_path / f".det_a.png.{dead}.tmp").symlink_to(tmp_path / "target")
    (tmp_path / f".roc_a.png.{dead}.tmp").write_text("stale")
    assert sweep_temporaries(tmp_path, REPORT_NAMES, locked=True) == [tmp_path / f".roc_a.png.{dead}.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".index.html.{dead}.tmp", f".hist_a.png.{os.getpid()}.tmp", "target", f".det_a.png.{dead}.tmp"])
    assert sweep_stale_temporaries(tmp_path / "none", None) == []  # no folder yet: nothing to do
