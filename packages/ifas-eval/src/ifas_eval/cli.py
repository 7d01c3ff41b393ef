"""The ``ifas-eval`` and ``ifas-predict`` command lines (the library is imported inside the commands)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

# the one --dtype list of every command (scf caption too); scf.captioning.captioner imports no torch/transformers
from scf.captioning.captioner import DTYPE_CHOICES

logger = logging.getLogger(__name__)

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

DTYPE_HELP = "auto: bfloat16 on CUDA, float32 on CPU and MPS; bf16/fp16/fp32 are accepted too."
DEVICE_HELP = ("auto (a CUDA GPU, else Apple MPS on an Apple silicon Mac, else cpu), cpu, cuda, cuda:N or mps. "
               "MPS is supported by reading, untested on a Mac.")
NORMALIZE_HELP = ("P(real) read at the answer position: vocab = P(' Yes') over the whole vocabulary (the paper's "
                  "score); yes_no = P(' Yes') / (P(' Yes') + P(' No')). Only with yes_no is p_real >= 0.5 the "
                  "model's own Yes-over-No choice, so that 'judgment' at threshold 0.5 agrees with the generated "
                  "'answer'; with vocab, p_real < 0.5 can still be the model's Yes (the rest of the vocabulary "
                  "shares the mass), so take the threshold from a dev set.")


def _setup_logging(verbose: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False)], force=True)
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "huggingface_hub", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # bitsandbytes (imported with peft) warns on every CPU start that an optional Hub kernel is missing
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors said in one line: bad input, unreadable files; also safetensors' own error (neither an OSError
    nor a ValueError), e.g. a checkpoint's ``model.safetensors`` cut short by a full disk."""
    errors: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, OSError, KeyError)
    try:  # called only once an error is raised: safetensors (small, no torch) is imported then
        from safetensors import SafetensorError
    except ImportError:
        return errors
    return (*errors, SafetensorError)


@contextlib.contextmanager
def _said_as_write_problem(out: Path | None, *, kept: str, resumes: bool) -> Iterator[None]:
    """A failed write of the run's outputs (a full disk, a quota, EIO, a read-only folder) becomes one line:
    the file that could not be written, what is kept, and that rerunning the same command resumes
    (`ifas_eval.outputs.write_problem`); other errors pass as they are."""
    from ifas_eval.outputs import write_problem

    try:
        yield
    except OSError as e:
        problem = write_problem(e, out, kept=kept, resumes=resumes)
        if problem is None:
            raise
        logger.debug("error", exc_info=True)
        raise click.ClickException(problem) from None


def _one_line(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(text.split()) or type(e).__name__


def _named_files(specs: tuple[str, ...]) -> list[tuple[str, str]]:
    named = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if sep and name and not Path(spec).exists():
            named.append((name, path))
        else:
            named.append((Path(spec).stem, spec))
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise click.ClickException(f"--scores names repeat ({', '.join(names)}); use NAME=FILE")
    return named


def _list_protocols() -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ifas_eval.protocols import builtin_protocols

    table = Table(title="Built-in protocols (ifas-eval --protocol NAME; or a YAML file of the same form)",
                  show_lines=True)
    for col in ("Protocol", "Setting (--checkpoint SETTING=CKPT)", "Train: source [splits]", "Test sets [splits]"):
        table.add_column(col)
    for p in builtin_protocols():
        for i, s in enumerate(p.settings):
            table.add_row(f"[bold]{escape(p.name)}[/bold]\n{escape(p.title)}" if i == 0 else "",
                          escape(f"{s.name}\n({s.label})"),
                          escape("\n".join(sel.describe() for sel in s.train) or "-"),
                          escape("\n".join(t.describe() for t in s.tests)))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    click.echo("Splits are the datasets' own splits. MCIO uses train+test on both sides, as FLIP's lists do (dev "
               "splits left out); FLIP's test lists also leave out its 5-shot videos: add --exclude-videos "
               "<ds>_real_shot.txt --exclude-videos <ds>_fake_shot.txt (20 videos per target; needs a benchmark "
               "ingested with scf ingest --source flip-mcio). Sources are the `source` values written by "
               f"`scf ingest`; {OWN_DATA_HINT}.")


BUILTIN_PROTOCOL_HELP = ("mcio (Protocol 1), mcio-celeba (Protocol 1 + CelebA-Spoof), one-to-eleven (Protocol 2), "
                         "one-to-eleven-flip (Protocol 2 on FLIP's MCIO test sets), sample (the embedded synthetic "
                         "sample)")
"""The built-in protocols as --protocol's help names them (a test keeps it equal to `builtin_protocols`)."""
OWN_DATA_HINT = ("for your own data, write a protocol YAML file (docs/evaluation.md, 'Your own protocol') and "
                 "pass --protocol my.yaml")


def _version(prog_name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--version``: ``PROG (ifas-eval) X.Y.Z``, the form of ``scf --version``."""
    return click.version_option(package_name="ifas-eval", prog_name=prog_name,
                                message="%(prog)s (%(package)s) %(version)s")


@click.command(context_settings=_CONTEXT)
@_version("ifas-eval")
@click.option("--list-protocols", is_flag=True, help="Show the built-in protocols and exit.")
@click.option("--protocol", metavar="NAME|FILE.yaml",
              help=f"A built-in protocol: {BUILTIN_PROTOCOL_HELP} (--list-protocols shows their settings); or, "
                   "for your own data, a protocol YAML file naming the training and test sources and splits "
                   "(docs/evaluation.md, 'Your own protocol').")
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="[SETTING=]CKPT",
              help="Checkpoint folder (save_pretrained) or Hub id. SETTING=CKPT evaluates CKPT on one setting; "
                   "a plain CKPT is evaluated on every setting without one. Leave-one-out protocols (mcio, "
                   "sample) need one checkpoint per setting: a checkpoint shared by settings that train on each "
                   "other's test domain is refused unless --shared-checkpoint. Repeat for seeds (mean ± std).")
@click.option("--shared-checkpoint", is_flag=True,
              help="Allow one checkpoint on several leave-one-out settings; its rows are marked '(seen domain)'.")
@click.option("--data", "--dataset", "data", metavar="PATH|ORG/NAME",
              help="Benchmark dataset: a dataset folder, a folder of per-source dataset folders, or a Hub id "
                   "(one config per source). Default for the sample protocol: the embedded sample.")
@click.option("--scores", "score_files", multiple=True, metavar="[NAME=]FILE.csv",
              help="Score file(s) with columns video_id,label,score (label 1 = real, score = P(real); optional "
                   "attack_type, frame). Several are compared side by side under the same conventions.")
@click.option("--dev-scores", metavar="FILE.csv",
              help="With --scores: a dev score file; its FLIP/SSDG EER threshold is the operating threshold.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.1), default=None,
              help="Operating threshold for HTER@thr and the ISO/IEC 30107-3 metrics (default: the protocol's "
                   "dev sets' EER threshold if it has dev sets, else 0.5). The headline HTER always follows "
                   "FLIP/SSDG (threshold picked on the test set itself).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default with --checkpoint: eval-<protocol>). Score files, results.{md,csv,json}"
                   ", run.json and report/. One run per folder at a time (a second is refused); for several "
                   "GPUs, one --out per run, then one call over the copied scores (docs/evaluation.md).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder (default with --checkpoint: <out>/report; with --scores: none).")
@click.option("--no-report", is_flag=True, help="Do not write the report.")
@click.option("--explain", type=click.IntRange(0), default=4, show_default=True,
              help="Per test set, explain this many wrong and this many right frames in the report page.")
@click.option("--max-new-tokens", type=click.IntRange(1), default=40, show_default=True,
              help="Generation budget of an explanation.")
@click.option("--setting", "settings", multiple=True, help="Only these settings of the protocol.")
@click.option("--exclude-videos", "exclude_files", multiple=True, metavar="FILE",
              help="Leave the videos of FILE out of every test set before scoring (repeatable). One entry per "
                   "line: FLIP's <ds>/<split>/<real|fake>/<video>_frame0.png or a video id; matched on the "
                   "benchmark's video_id. E.g. FLIP's <ds>_real_shot.txt and <ds>_fake_shot.txt give FLIP's MCIO "
                   "test sets (needs a benchmark ingested with scf ingest --source flip-mcio).")
@click.option("--skip-corrupt", is_flag=True,
              help="Skip benchmark rows whose image does not decode, counting them per test set (default: stop "
                   "with a line naming the dataset, split, row and path).")
@click.option("--test-set", "test_sets", multiple=True, help="Only these test sets.")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Images per forward pass (default: 256 on a CUDA GPU, 32 on CPU and MPS).")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True,
              help=DTYPE_HELP)
@click.option("--normalize", type=click.Choice(["vocab", "yes_no"]), default="vocab", show_default=True,
              help=NORMALIZE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object on stdout.")
@click.option("--train-commands", is_flag=True,
              help="With --protocol: print the ifas-train commands of each setting (its training sources and "
                   "splits, seeds 0, 1, 2 into runs/<protocol>-<setting>-s<seed>; --data names the VQA corpus) "
                   "and the ifas-eval line over those runs (mean ± std over seeds), and exit.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(list_protocols: bool, protocol: str | None, checkpoints: tuple[str, ...], shared_checkpoint: bool,
         data: str | None, score_files: tuple[str, ...], dev_scores: str | None, threshold: float | None,
         out_dir: Path | None, report_dir: Path | None, no_report: bool, explain: int, max_new_tokens: int,
         settings: tuple[str, ...], exclude_files: tuple[str, ...], skip_corrupt: bool, test_sets: tuple[str, ...],
         batch_size: int | None, device: str, dtype: str, normalize: str, as_json: bool, train_commands: bool,
         verbose: bool) -> None:
    """Evaluate I-FAS checkpoints on cross-domain FAS protocols, or score files, under explicit conventions.

    \b
    Headline numbers follow FLIP/SSDG (as Table 1's comparison methods do; the paper does not state its
    convention): frame scores averaged per video, AUC, HTER = EER
    at the threshold chosen on the test set itself, TPR@FPR=1%. Beside them: HTER at a fixed operating
    threshold and ISO/IEC 30107-3 APCER (per attack type, max) / BPCER / ACER. See docs/metrics.md.

    \b
    Examples:
      ifas-eval --list-protocols
      ifas-eval --protocol mcio --train-commands --data runs/scf/corpus
      ifas-eval --scores results.csv --json
      ifas-eval --scores ours=a.csv --scores flip=b.csv
      ifas-eval --protocol one-to-eleven --checkpoint runs/one-to-eleven-CelebA-Spoof-s0/final --data /data/fas-benchmark
      ifas-eval --protocol mcio --data D --checkpoint M=runs/mcio-M-s0/final --checkpoint C=runs/mcio-C-s0/final \\
          --checkpoint I=runs/mcio-I-s0/final --checkpoint O=runs/mcio-O-s0/final \\
          --exclude-videos flip/msu_real_shot.txt --exclude-videos flip/msu_fake_shot.txt ...
      ifas-eval --protocol sample --checkpoint sample-domain-a=runs/sample-a/final
      ifas-eval --protocol my.yaml --checkpoint runs/mine/final --data my-benchmark   # own data: a YAML protocol
    """
    if list_protocols:
        _list_protocols()
        return
    if train_commands:
        if not protocol:
            raise click.ClickException("--train-commands needs --protocol NAME")
        from ifas_eval.protocols import PAPER_SEEDS, load_protocol

        try:
            chosen = load_protocol(protocol)
            names = list(settings) or [s.name for s in chosen.settings]
            for setting in names:
                click.echo(chosen.finetune_exclusion_hint(setting))
                for line in chosen.train_commands(setting, data or "CORPUS"):
                    click.echo(line)
            click.echo(f"# then, on the benchmark (mean ± std over seeds {', '.join(map(str, PAPER_SEEDS))}):")
            click.echo(chosen.eval_command(list(settings) or None))
        except (ValueError, KeyError, FileNotFoundError) as e:
            raise click.ClickException(_one_line(e)) from None
        return
    _setup_logging(verbose)
    if score_files and (protocol or checkpoints):
        raise click.ClickException("--scores and --protocol/--checkpoint are separate modes; use one")
    if (exclude_files or skip_corrupt or shared_checkpoint) and not protocol:
        flag = "--exclude-videos" if exclude_files else "--skip-corrupt" if skip_corrupt else "--shared-checkpoint"
        raise click.ClickException(f"{flag} needs --protocol and --checkpoint (score files are used as they are)")
    try:
        if score_files:
            _score_file_mode(score_files, dev_scores, threshold, out_dir, report_dir, as_json)
        elif protocol:
            if not checkpoints:
                raise click.ClickException("--protocol needs at least one --checkpoint (or use --scores)")
            _checkpoint_mode(protocol, checkpoints, data, threshold, out_dir, report_dir, no_report, explain,
                             max_new_tokens, settings, test_sets, batch_size, device, dtype, normalize, as_json,
                             exclude_files=exclude_files, skip_corrupt=skip_corrupt,
                             shared_checkpoint=shared_checkpoint)
        elif checkpoints:
            raise click.ClickException("--checkpoint needs --protocol: a built-in one (see --list-protocols) or, "
                                       f"{OWN_DATA_HINT}")
        else:
            raise click.ClickException("nothing to do: give --scores FILE, or --protocol NAME --checkpoint CKPT, "
                                       "or --list-protocols (see --help)")
    except click.ClickException:
        raise
    except _user_errors() as e:
        logger.debug("error", exc_info=True)
        raise click.ClickException(_one_line(e)) from None


SEVERAL_GPUS_HINT = "to use several GPUs, give each run its own --out (docs/evaluation.md, 'Several GPUs')"


@contextlib.contextmanager
def _output_folders(*folders: Path | None) -> Iterator[None]:
    """Hold the run's output folders (`scf.locking.output_lock`) until it ends.

    A second ``ifas-eval`` on the same ``--out`` (or ``--report``) is refused at once, in one line naming the
    holder, before it loads anything: two runs writing one folder would each rewrite ``results.*``,
    ``run.json`` and ``report/`` with their own settings only. A folder nested in one already held is not
    locked again. A folder this run created and leaves holding nothing but the lock file (a run stopped by a
    mistyped ``--data``) is removed again (`scf.locking.output_lock` does it).
    """
    from scf.locking import FolderInUse, output_lock

    held: list[Path] = []
    with contextlib.ExitStack() as stack:
        for folder in folders:
            if folder is None or any(folder.resolve().is_relative_to(h.resolve()) for h in held):
                continue
            try:
                stack.enter_context(output_lock(folder, "ifas-eval"))
            except FolderInUse as e:
                hint = f" ({SEVERAL_GPUS_HINT})" if "in use" in str(e) else ""
                raise click.ClickException(f"{_one_line(e)}{hint}") from None
            held.append(folder)
        yield


def _score_file_mode(score_files: tuple[str, ...], dev_scores: str | None, threshold: float | None,
                     out_dir: Path | None, report_dir: Path | None, as_json: bool) -> None:
    from ifas_eval.outputs import sweep_stale_temporaries
    from ifas_eval.runner import evaluate_score_files, print_tables, run_meta, write_report, write_tables

    named = _named_files(score_files)
    scored = evaluate_score_files(named, threshold=threshold, dev=dev_scores)
    title = "Score files"
    with _output_folders(out_dir, report_dir), \
            _said_as_write_problem(out_dir, kept="the score files given are read only, never changed",
                                   resumes=False):
        sweep_stale_temporaries(out_dir, report_dir)  # a killed run's .<name>.<pid>.tmp (under the lock)
        if out_dir is not None:
            meta = run_meta(mode="scores", score_files=dict(named), dev_scores=dev_scores, threshold=threshold)
            write_tables(out_dir, scored, title, meta, with_setting=False)  # run.json too, with the tables
        if report_dir is not None:
            write_report(report_dir, scored, title)
            logger.info("report: %s", report_dir / "index.html")
    if as_json:
        results = [s.result for s in scored]
        if len(results) == 1:
            click.echo(json.dumps(results[0]))
        else:
            click.echo(json.dumps({"convention": results[0]["convention"],
                                   "results": {r["test_set"]: r for r in results}}))
    else:
        print_tables(scored, title, with_setting=False)


def _checkpoint_mode(protocol_name: str, checkpoints: tuple[str, ...], data: str | None, threshold: float | None,
                     out_dir: Path | None, report_dir: Path | None, no_report: bool, explain: int,
                     max_new_tokens: int, settings: tuple[str, ...], test_sets: tuple[str, ...],
                     batch_size: int | None, device: str, dtype: str, normalize: str, as_json: bool, *,
                     exclude_files: tuple[str, ...] = (), skip_corrupt: bool = False,
                     shared_checkpoint: bool = False) -> None:
    from ifas_eval.exclusion import read_exclusion_files
    from ifas_eval.outputs import sweep_stale_temporaries
    from ifas_eval.protocols import load_protocol
    from ifas_eval.runner import (
        evaluate_protocol,
        plan_checkpoints,
        print_tables,
        run_meta,
        write_report,
        write_tables,
    )
    from ifas_eval.scoring import (
        CPU_BATCH_SIZE,
        GPU_BATCH_SIZE,
        canonical_dtype,
        check_checkpoint,
        pick_device,
    )

    protocol = load_protocol(protocol_name)
    plan = plan_checkpoints(protocol, checkpoints, settings, shared_checkpoint=shared_checkpoint)
    # cheap checks first: nothing heavy (the embedded sample, the benchmark, a model) before they pass
    resolved_device = pick_device(device, option="--device")
    batch_size = batch_size or (GPU_BATCH_SIZE if resolved_device.startswith("cuda") else CPU_BATCH_SIZE)
    dtype = canonical_dtype(dtype)
    for ckpt in dict.fromkeys(c for cs in plan.per_setting.values() for c in cs):
        check_checkpoint(ckpt)
    exclusions = read_exclusion_files(exclude_files)
    out = out_dir or Path(f"eval-{protocol.name}")
    meta = run_meta(mode="checkpoint", protocol=protocol.name, protocol_file=protocol.path, data=data or
                    protocol.default_data, checkpoints=plan.per_setting, threshold=threshold,
                    batch_size=batch_size, device=device, dtype=dtype, normalize=normalize,
                    test_sets=list(test_sets), skip_corrupt=skip_corrupt, shared_checkpoint=shared_checkpoint,
                    exclude_videos=[{"file": e.path, "label": e.label, "entries": len(e.keys)} for e in exclusions])

    if protocol.default_data == "embedded-sample" and data is None:
        logger.warning("data: the embedded SYNTHETIC sample; its numbers test the toolkit, they are not FAS "
                       "results")
    title = protocol.title
    # one run per --out (and --report) at a time: refused here, before the data or a model loads
    kept = f"finished score files and the rows scored so far (*.csv.partial) in {out / 'scores'} are kept"
    with _output_folders(out, None if no_report else report_dir), \
            _said_as_write_problem(out, kept=kept, resumes=True):
        # a killed run's .<name>.<pid>.tmp in the locked folders (--no-report --report DIR: that one is not held)
        sweep_stale_temporaries(out, out / "report" if report_dir is None else None if no_report else report_dir)
        scored = evaluate_protocol(protocol, plan, data=data, out=out, batch_size=batch_size, threshold=threshold,
                                   device=device, dtype=dtype, test_sets=test_sets, normalize=normalize,
                                   exclusions=exclusions, skip_corrupt=skip_corrupt)
        # run.json is written with results.*, as one set: a run that fails before (a mistyped --data, a full
        # disk) leaves the previous evaluation's four files as they were, never a mix of two runs
        write_tables(out, scored, title, meta, with_setting=True)
        if not no_report:
            write_report(report_dir or out / "report", scored, title, explain=explain,
                         max_new_tokens=max_new_tokens, device=device, dtype=dtype, normalize=normalize)
    if as_json:
        click.echo((out / "results.json").read_text())
    else:
        print_tables(scored, title, with_setting=True)
        click.echo(f"results: {out / 'results.md'}, {out / 'results.csv'}, {out / 'results.json'}"
                   + ("" if no_report else f"; report: {(report_dir or out / 'report') / 'index.html'}"))


class _FramesType(click.ParamType):
    """``flip`` (None: FLIP/SSDG's rule) or a positive number of frames, as ``scf ingest --frames`` takes."""

    name = "flip|K"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | None:
        if value is None or value == "flip":
            return None
        text = str(value)
        if text.isdigit() and int(text) >= 1:
            return int(text)
        self.fail(f"{value!r} is neither 'flip' nor a positive number of frames", param, ctx)


_FRAMES = _FramesType()


@click.command(context_settings=_CONTEXT)
@_version("ifas-predict")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--checkpoint", metavar="CKPT", help="I-FAS checkpoint folder (save_pretrained) or Hub id.")
@click.option("--preset", type=click.Choice(["tiny"]), default=None,
              help="Use a RANDOM, untrained tiny model built offline (tests the pipeline; judgments are noise).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.1), default=0.5, show_default=True,
              help="judgment = real iff p_real >= threshold; set it from a dev set (ifas-eval reports the dev EER "
                   "threshold). 0.5 is the model's own Yes-over-No choice only with --normalize yes_no (then "
                   "'judgment' agrees with the generated 'answer'); with vocab it is not. Written into every JSON "
                   "line.")
@click.option("--frames", "num_frames", type=_FRAMES, default="flip", show_default=True,
              help="Video frames, as scf ingest's --frames: 'flip' (FLIP/SSDG's two frames, 6 and 6 + n // 2) "
                   "or a number k of frames spread evenly.")
@click.option("--normalize", type=click.Choice(["vocab", "yes_no"]), default="vocab", show_default=True,
              help=NORMALIZE_HELP)
@click.option("--margin", type=click.FloatRange(0.0), default=None,
              help="Crop margin, fraction of the face box side added on every side [default: scf ingest's "
                   "--margin default, 0.2]. Use the --margin the model's training data was ingested with.")
@click.option("--no-detect", "--no-face-detection", "no_face_detection", is_flag=True,
              help="Inputs are face crops already: use the whole image, squared (as scf ingest --no-detect; "
                   "for a model trained on pre-cropped faces such as FLIP's MCIO crops).")
@click.option("--max-new-tokens", type=click.IntRange(1), default=40, show_default=True,
              help="Generation budget of the explanation.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True,
              help=DTYPE_HELP)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def predict(inputs: tuple[str, ...], checkpoint: str | None, preset: str | None, threshold: float,
            num_frames: int | None, normalize: str, margin: float | None, no_face_detection: bool,
            max_new_tokens: int, device: str, dtype: str, verbose: bool) -> None:
    """Judge images, folders or videos with an I-FAS checkpoint; one JSON line per input on stdout.

    \b
    Each line: {"input", "p_real", "judgment" ("real"/"fake" at --threshold), "threshold", "normalize",
    "answer" (the generated Yes/No), "explanation", "face_box" ([x, y, w, h] or null), "faces" (faces found),
    "crop" ({detect, margin, size}: must match the training data's crop)}; "face_found": false when a judged
    picture had no face (the whole image was judged); "warnings" for an input too small for the detector.
    Videos: frames are picked as scf ingest picks them (a sampled frame without a face is replaced by the
    nearest of 3 neighbours each side with one); they add "best_frame" (the frame number whose answer,
    explanation and face_box are shown), "frames_without_face" and "frames" (per frame: index, sampled,
    p_real, face_box, faces, answer, explanation).
    An unreadable input gives a line with "error"; the rest are still processed and the exit status is 1 at
    the end. From Python: ifas_eval.predict.judge(model, processor, path) returns the same record.
    """
    _setup_logging(verbose)
    try:
        from ifas_eval.predict import expand_inputs, predict_inputs

        model, processor = _load_model(checkpoint, preset, device, dtype)
        failures = 0
        for record in predict_inputs(model, processor, expand_inputs(inputs), threshold=threshold,
                                     detect_faces=not no_face_detection, max_new_tokens=max_new_tokens,
                                     num_frames=num_frames, normalize=normalize, margin=margin):
            failures += "error" in record
            click.echo(json.dumps(record))
            sys.stdout.flush()
    except _user_errors() as e:
        logger.debug("error", exc_info=True)
        raise click.ClickException(_one_line(e)) from None
    if failures:
        raise click.ClickException(f"{failures} input(s) could not be processed (see their 'error' field)")


def _load_model(checkpoint: str | None, preset: str | None, device: str, dtype: str) -> tuple[object, object]:
    """The model and processor of ``--checkpoint`` or of ``--preset tiny`` (exactly one must be given)."""
    if (checkpoint is None) == (preset is None):
        raise click.ClickException("give exactly one of --checkpoint CKPT or --preset tiny")
    from ifas_eval.scoring import check_checkpoint, load_checkpoint, pick_device

    device = pick_device(device, option="--device")  # cheap checks before the model code is imported
    if preset:
        return _tiny_model(device)
    check_checkpoint(checkpoint)
    return load_checkpoint(checkpoint, device, dtype)


def _tiny_model(device: str) -> tuple[object, object]:
    from ifas_eval.scoring import pick_device
    from ifas_model.presets import build_model

    click.secho("WARNING: --preset tiny is a RANDOM, UNTRAINED model built offline; its p_real, judgments and "
                "explanations are noise. Use it to test the pipeline only.", fg="red", bold=True, err=True)
    built = build_model("tiny")
    model, processor = built if isinstance(built, tuple) else (built, None)
    if processor is None:
        raise click.ClickException("ifas_model.presets.build_model('tiny') returned no processor")
    model.to(pick_device(device, option="--device")).eval()
    return model, processor


@click.command(context_settings=_CONTEXT)
@_version("ifas-demo")
@click.option("--checkpoint", metavar="CKPT", help="I-FAS checkpoint folder (save_pretrained) or Hub id.")
@click.option("--preset", type=click.Choice(["tiny"]), default=None,
              help="Use a RANDOM, untrained tiny model built offline (the page says so; judgments are noise).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.1), default=0.5, show_default=True,
              help="Initial threshold of the page's slider (real iff p_real >= threshold; 1.1 rejects "
                   "everything, as in ifas-eval); set it from a dev set. See --normalize for what 0.5 means.")
@click.option("--normalize", type=click.Choice(["vocab", "yes_no"]), default="vocab", show_default=True,
              help=NORMALIZE_HELP)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on. 0.0.0.0 exposes the model and every uploaded face to the network "
                   "(no authentication): see docs/demo.md.")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True)
@click.option("--margin", type=click.FloatRange(0.0), default=None,
              help="Crop margin, as ifas-predict --margin [default: scf ingest's, 0.2].")
@click.option("--no-detect", "no_detect", is_flag=True,
              help="Uploads are face crops already: judge the whole image (as ifas-predict --no-detect).")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True,
              help=DTYPE_HELP)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def demo(checkpoint: str | None, preset: str | None, threshold: float, normalize: str, host: str, port: int,
         margin: float | None, no_detect: bool, device: str, dtype: str, verbose: bool) -> None:
    """Serve the one-image web demo (Gradio): photo or webcam in; face, p_real, judgment, explanation out.

    Uploads and face crops go to a private temporary folder (mode 0700; inside $GRADIO_TEMP_DIR if you set
    it), deleted after 10 minutes and removed entirely when the demo stops (Ctrl-C, SIGTERM or SIGHUP);
    see docs/demo.md.
    """
    import signal

    _setup_logging(verbose)
    previous_handlers = _exit_on_signals()
    try:
        _serve_demo(checkpoint, preset, threshold, normalize, host, port, device, dtype, margin=margin,
                    detect_faces=not no_detect)
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)


def _serve_demo(checkpoint: str | None, preset: str | None, threshold: float, normalize: str, host: str,
                port: int, device: str, dtype: str, *, margin: float | None = None,
                detect_faces: bool = True) -> None:
    import contextlib

    from ifas_eval.demo import build_demo, launch, private_temp_dir, temp_parent

    parent = temp_parent()  # the user's GRADIO_TEMP_DIR, if set: the private folder goes inside it
    with contextlib.ExitStack() as stack:
        try:
            temp_dir = stack.enter_context(private_temp_dir(parent))
        except OSError as e:
            raise click.ClickException(f"{_one_line(e)} (set GRADIO_TEMP_DIR or TMPDIR to a writable folder)"
                                       ) from None
        try:  # Gradio first, in its own try: a missing Gradio is said before a model loads, and only then
            import gradio  # noqa: F401
        except ImportError as e:
            raise click.ClickException(f"the demo needs Gradio: pip install 'ifas-eval[demo]' ({_one_line(e)})"
                                       ) from None
        try:
            model, processor = _load_model(checkpoint, preset, device, dtype)
            note = (f"Checkpoint: {_shown_checkpoint(checkpoint)}" if checkpoint else
                    "This is a RANDOM, UNTRAINED tiny model built offline: its outputs are noise.")
            app = build_demo(model, processor, threshold=threshold, model_note=note, normalize=normalize,
                             detect_faces=detect_faces, margin=margin)
        # an ImportError here is a library the model needs (Gradio was checked above): named as itself
        except (ImportError, *_user_errors()) as e:
            logger.debug("error", exc_info=True)
            raise click.ClickException(_one_line(e)) from None
        logger.info("uploads and face crops: %s (private to you; files older than 10 minutes are deleted, the "
                    "folder when the demo stops%s)", temp_dir,
                    "; inside your GRADIO_TEMP_DIR, which is left as it is" if parent is not None else "")
        launch(app, host=host, port=port)


def _shown_checkpoint(checkpoint: str) -> str:
    """The checkpoint as the page names it: a Hub id as it is, a local folder by its last two path parts only
    (the page is served to browsers; the server's full paths stay on the server)."""
    from ifas_eval.scoring import _looks_like_path

    if not _looks_like_path(checkpoint):
        return checkpoint
    return "/".join(Path(checkpoint).expanduser().resolve().parts[-2:])


EXIT_SIGNALS = ("SIGTERM", "SIGHUP")
"""Signals that end ``ifas-demo`` like Ctrl-C (its temporary folder is removed): SIGTERM (``kill``, systemd,
``timeout``) and SIGHUP (the terminal closed, an ssh session dropped), where the platform has them (Windows
has no SIGHUP). The exit status is the shell's 128 + signal number (143, 129)."""


def _exit_on_signals() -> dict[int, Any]:
    """Turn each of `EXIT_SIGNALS` into ``sys.exit(128 + signum)``, so ``finally`` blocks (the temporary
    folder's removal) run.

    Returns the previous handlers by signal number, to restore (empty off the main thread, where no handler
    can be set)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for name in EXIT_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))
    return previous
