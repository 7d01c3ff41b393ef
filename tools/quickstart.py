"""The whole I-FAS pipeline on the embedded sample, in one command, offline.

    uv run python tools/quickstart.py                  # tiny random models, about 40 s on 2 idle CPU cores
    uv run python tools/quickstart.py --preset default # the real checkpoints (Hub access or local copies; GPU)

Each stage runs the toolkit's real command-line entry point (in this process, to pay the start-up of torch
once) and prints the equivalent shell command, so that what you see is what you would type:

1. ``scf sample --as-files``: the SYNTHETIC sample as a user holds data (JPEGs + a CSV manifest per capture
   domain);
2. ``scf ingest``: each domain into the benchmark dataset (one config per source);
3. ``scf caption``: Spoof-aware Captioning and Filtering into the VQA corpus;
4. ``ifas-train``: the I-FAS model on three domains (a setting of the ``sample`` protocol);
5. ``ifas-eval --protocol sample``: the held-out fourth domain, paper-style table (FLIP/SSDG convention);
6. ``ifas-predict``: one image, with its judgment and explanation.

Outputs go to ``--workdir`` (default ``runs/quickstart``); rerunning resumes every stage.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

TINY_NOTE = (
    "The models of this run are TINY and RANDOM-INITIALISED (built from config, no download), and the data is "
    "the SYNTHETIC embedded sample: the numbers show that the pipeline works end to end, they are not FAS "
    "results. With Hub access (or local copies of Salesforce/blip2-opt-2.7b, openai/clip-vit-large-patch14 "
    "and facebook/opt-2.7b) and a GPU, the same pipeline runs the real models: "
    "python tools/quickstart.py --preset default"
)
HELD_OUT = "sample-domain-a"
TRAIN_DOMAINS = ("sample-domain-b", "sample-domain-c", "sample-domain-d")


def _run(title: str, command: object, prog: str, args: list[str]) -> None:
    """Run one CLI entry point in-process, as ``prog args`` would in a shell; exit on its error."""
    import click

    print(f"\n\033[1m== {title}\033[0m\n$ {prog} {' '.join(shlex.quote(a) for a in args)}", flush=True)
    start = time.monotonic()
    try:
        command.main(args=args, prog_name=prog, standalone_mode=False)  # type: ignore[attr-defined]
    except click.ClickException as e:
        e.show()
        sys.exit(f"quickstart: stage '{title}' failed")
    print(f"({time.monotonic() - start:.0f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("runs/quickstart"), help="Where every stage writes.")
    parser.add_argument("--preset", choices=["tiny", "default"], default="tiny",
                        help="tiny: random models built offline; default: the real checkpoints.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from ifas_eval.cli import main as ifas_eval
    from ifas_eval.cli import predict as ifas_predict
    from ifas_model.cli import main as ifas_train
    from scf.cli import main as scf

    tiny = args.preset == "tiny"
    w = args.workdir
    start = time.monotonic()
    if tiny:
        print(f"\033[1;33mNOTE:\033[0m {TINY_NOTE}")

    files = w / "sample-files"
    _run("1/6 the embedded sample, as files (SYNTHETIC)", scf, "scf",
         ["sample", "--out", str(files), "--as-files", "--seed", str(args.seed)])
    for domain in (HELD_OUT, *TRAIN_DOMAINS):
        _run(f"2/6 ingest {domain}", scf, "scf",
             ["ingest", "--source", "csv", "--root", str(files / domain), "--list", str(files / domain / "manifest.csv"),
              "--source-name", domain, "--config", domain, "--out", str(w / "benchmark"), "--no-detect",
              "--no-progress"])
    caption = ["caption", "--dataset", str(w / "benchmark"), "--preset", args.preset, "--out", str(w / "scf"),
               "--no-progress"]
    if tiny:  # the tiny captioner's words are noise: short captions, and no keyword may match (empty D_S)
        caption += ["--max-new-tokens", "10", "--min-new-tokens", "4", "--epochs", "2", "--if-empty", "general"]
    _run("3/6 spoof-aware captioning and filtering (SCF)", scf, "scf", caption)
    corpus = str(w / "scf" / "corpus")
    _run(f"4/6 train I-FAS on {', '.join(TRAIN_DOMAINS)}", ifas_train, "ifas-train",
         ["--dataset", corpus, "--preset", args.preset, "--sources", ",".join(TRAIN_DOMAINS),
          "--train-split", "train", "--output", str(w / "run"), "--seed", str(args.seed)])
    checkpoint = str(w / "run" / "final")
    _run(f"5/6 evaluate on the held-out domain {HELD_OUT}", ifas_eval, "ifas-eval",
         ["--protocol", "sample", "--setting", HELD_OUT, "--checkpoint", f"{HELD_OUT}={checkpoint}",
          "--data", str(w / "benchmark"), "--out", str(w / "eval"), "--explain", "2"])
    image = sorted((files / HELD_OUT / "test" / "print").glob("*.jpg"))[0]
    _run("6/6 one prediction with its explanation", ifas_predict, "ifas-predict",
         [str(image), "--checkpoint", checkpoint, "--no-face-detection"])

    results = json.loads((w / "eval" / "results.json").read_text())
    print(f"\nDone in {time.monotonic() - start:.0f} s. Results: {w / 'eval'}/results.md, report: "
          f"{w / 'eval'}/report/index.html; model: {checkpoint}")
    print(f"Metric convention: {results.get('convention', 'flip-ssdg')} (see docs/metrics.md).")
    if tiny:
        print(f"\033[1;33mNOTE:\033[0m {TINY_NOTE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
