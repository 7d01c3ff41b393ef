"""Dataset cards (README.md with a YAML header) and the summary table of an ingest; the Hub push."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from scf.shards import write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

    from .base import Reader
    from .runner import IngestConfig, IngestSummary

logger = logging.getLogger(__name__)

TAGS = ["face-anti-spoofing", "presentation-attack-detection", "scf", "i-fas"]


def _data_files(splits: list[str], prefix: str = "") -> list[dict[str, str]]:
    return [{"split": s, "path": f"{prefix}data/{s}-*"} for s in splits]


def _split_table(summary: dict[str, Any]) -> str:
    from scf.schema import ATTACK_TYPES

    splits = summary["splits"]
    types = [t for t in ATTACK_TYPES if any(t in s["attack_types"] for s in splits.values())]
    head = "| split | rows | videos | real | fake | " + " | ".join(types) + " |"
    sep = "|---" * (5 + len(types)) + "|"
    lines = [head, sep]
    for name, s in splits.items():
        cells = [name, s["rows"], s["videos"], s["real"], s["fake"], *(s["attack_types"].get(t, 0) for t in types)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _skip_lines(summary: dict[str, Any]) -> str:
    if not summary["skipped"]:
        return "No item was skipped."
    lines = ["| reason | items |", "|---|---|"]
    lines += [f"| {reason} | {n} |" for reason, n in summary["skipped"].items()]
    return "\n".join(lines) + "\n\nEvery skipped item is listed with its file name in `skipped.jsonl`."


def accounting_line(summary: dict[str, Any]) -> str:
    """Files seen = files with rows + files skipped (+ unaccounted, which must be 0)."""
    line = (f"files seen {summary['files_seen']} = with rows {summary['files_with_rows']} + skipped "
            f"{summary['files_skipped']}")
    if summary["unaccounted"]:
        line += f" + UNACCOUNTED {len(summary['unaccounted'])}"
    return line + f"; rows {summary['rows_total']}, skipped items {summary['skipped_total']}"


def _versions_line(versions: Any) -> str:  # noqa: ANN401 - JSON value
    """``ifas-scf 0.1.0, opencv-python-headless 4.11.0, ...`` from the recorded versions (``not recorded``)."""
    if not isinstance(versions, dict) or not versions:
        return "not recorded"
    keep = ("ifas-scf", "opencv-python-headless", "cv2", "pyarrow", "datasets", "python")
    return ", ".join(f"{k} {versions[k]}" for k in keep if k in versions)


def dataset_card(summary: dict[str, Any], license_note: str, homepage: str = "") -> str:
    """The README.md of one source's dataset folder."""
    splits = list(summary["splits"])
    header = {
        "pretty_name": f"{summary['title']} (I-FAS benchmark format)",
        "license": "other",
        "license_name": f"{summary['source']}-licence",
        "license_link": homepage or "LICENSE",
        "task_categories": ["image-classification"],
        "tags": [*TAGS, summary["source"]],
        "configs": [{"config_name": "default", "data_files": _data_files(splits)}],
    }
    settings = summary.get("settings", {})
    frames = "frames 6 and 6 + n // 2 (FLIP rule)" if settings.get("frames") == "flip" else \
        f"{settings.get('frames')} equidistant frames"
    detect = "OpenCV Haar cascade face detection" if settings.get("detect") else \
        "no detection (inputs are face crops)"
    other = ", ".join(f"{k}: {v}" for k, v in summary.get("other_files", {}).items()) or "none"
    return f"""---
{yaml.safe_dump(header, sort_keys=False).strip()}
---

# {summary['title']} in the I-FAS benchmark format

Face crops of **{summary['title']}** written by `scf ingest --source {summary['source']}`: one row per image
or sampled video frame, columns of `scf.schema.BENCHMARK_COLUMNS` (`label` 1 = real, 0 = fake;
`attack_type` in live, print, replay, mask, mannequin, makeup, other).

**Licence.** {license_note}

## Contents

{_split_table(summary)}

{accounting_line(summary)}.

## Skipped items

{_skip_lines(summary)}

Other (non-image, non-video) files under the root, not ingested: {other}.

## How it was made

- Frames: {frames}; {detect}; crop margin {settings.get('margin')}, {settings.get('size')}x{settings.get('size')} RGB, {settings.get('image_format', 'png').upper()}.
- Splits are the dataset's own protocol splits; the mapping of names to labels and attack types is
  documented in the toolkit's `docs/ingest.md`.
- Software: {_versions_line(settings.get("versions"))}.

## Load

```python
import datasets
ds = datasets.load_dataset("PATH_OR_HUB_ID")
```

A Hub repository created by `scf ingest --push-to-hub` is private unless `--public` was given: loading it
then needs a token with access to it (`HF_TOKEN` or `hf auth login`).
"""


def parent_card(parent: Path) -> str:
    """The README.md of a folder holding several sources as configs (``<parent>/<source>/data/...``)."""
    configs, rows = [], []
    for sub in sorted(p for p in parent.iterdir() if (p / "ingest_summary.json").is_file()):
        try:
            summary = json.loads((sub / "ingest_summary.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            from .base import IngestError

            raise IngestError(f"{sub / 'ingest_summary.json'}: not valid JSON ({e}); rerun the scf ingest of config "
                              f"{sub.name!r} (nothing is redone) to rewrite it, then this one") from e
        splits = list(summary["splits"])
        configs.append({"config_name": sub.name, "data_files": _data_files(splits, f"{sub.name}/")})
        total = summary["splits"]
        rows.append(f"| `{sub.name}` | {summary['title']} | {', '.join(splits)} | "
                    f"{sum(s['real'] for s in total.values())} | {sum(s['fake'] for s in total.values())} | "
                    f"{summary['skipped_total']} |")
    header = {"pretty_name": "Face anti-spoofing benchmarks (I-FAS format)", "license": "other",
              "license_name": "per-source-licences", "task_categories": ["image-classification"],
              "tags": TAGS, "configs": configs}
    table = "\n".join(["| config | source | splits | real | fake | skipped |", "|---|---|---|---|---|---|", *rows])
    first = configs[0]["config_name"] if configs else "CONFIG"
    return f"""---
{yaml.safe_dump(header, sort_keys=False).strip()}
---

# Face anti-spoofing benchmarks in the I-FAS format

Several sources ingested by `scf ingest --config NAME`, one config each (columns of
`scf.schema.BENCHMARK_COLUMNS`; `label` 1 = real).

{table}

**Licence.** Each source is distributed by its owners under its own licence agreement; use and share a
config only as that agreement allows and only if you hold that licence yourself. Each config's own card
(`<config>/README.md`) has its counts, skipped items and settings.

## Load

```python
import datasets
ds = datasets.load_dataset("PATH_OR_HUB_ID", "{first}")
```

A Hub repository created by `scf ingest --push-to-hub` is private unless `--public` was given: loading it
then needs a token with access to it (`HF_TOKEN` or `hf auth login`).
"""


def write_cards(config: IngestConfig, reader: Reader, summary: IngestSummary) -> None:
    """Write the dataset card, and the parent card when the source is one config of several."""
    data = summary.to_json()
    write_text_atomic(config.dataset_dir / "README.md", dataset_card(data, reader.license_note, reader.homepage))
    if config.config_name:
        write_text_atomic(config.out / "README.md", parent_card(config.out))


def summary_table(summary: IngestSummary) -> Table:
    """A rich table of the per-split counts, the skips by reason and the file accounting."""
    from rich.table import Table

    from scf.schema import ATTACK_TYPES

    data = summary.to_json()
    types = [t for t in ATTACK_TYPES if any(t in s["attack_types"] for s in data["splits"].values())]
    table = Table(title=f"{summary.title}: {summary.rows_total} rows", caption=accounting_line(data))
    for col in ("split", "rows", "videos", "real", "fake", *types):
        table.add_column(col, justify="left" if col == "split" else "right")
    for name, s in data["splits"].items():
        table.add_row(name, *(str(v) for v in (s["rows"], s["videos"], s["real"], s["fake"])),
                      *(str(s["attack_types"].get(t, 0)) for t in types))
    for reason, n in data["skipped"].items():
        table.add_row(f"skipped: {reason}", str(n), *([""] * (3 + len(types))))
    return table


def recorded_paths(folder: Path) -> list[str]:
    """The local paths that the ``ingest_config.json`` files of ``folder`` (and of its configs) record: each
    ``--root``, ``--list`` and ``--celeba-labels``; an unreadable record is skipped (its folder is then hidden
    by the home-folder rule of `scf.hub.path_replacements` only)."""
    found: list[str] = [str(folder)]
    for record in (folder / "ingest_config.json", *sorted(folder.glob("*/ingest_config.json"))):
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict):
            continue
        found += [str(data["root"])] if isinstance(data.get("root"), str) else []
        for key in ("lists", "celeba_labels"):
            files = [p for p in data.get(key) or [] if isinstance(p, str)]
            found += files + [str(Path(p).parent) for p in files]
    return found


def push_to_hub(folder: Path, repo_id: str, *, private: bool = True) -> str:
    """Upload a dataset folder (one source, or a parent of several configs) to a Hub dataset repository.

    The repository is created private by default (``scf ingest --public`` makes it public): the face crops
    come from datasets licensed per request. An existing repository keeps its visibility.

    What is uploaded is a copy (`scf.hub.upload_redacted`) in which the local paths that ``ingest_config.json``,
    ``ingest_summary.json`` and ``skipped.jsonl`` record (``--root``, the ``--list`` files, the home folder) read
    ``<local>/<name>`` (in ``skipped.jsonl`` every absolute path does, also a list entry outside ``--root``); the
local files keep them, for the resume. After a failed upload that copy, the hidden ``.FOLDER.hub-upload`` (no
loader reads it as data), is kept for ``hf upload``.

    The token is the one ``huggingface_hub`` finds itself (``HF_TOKEN`` or ``hf auth login``); it is
    never read or printed here. Returns the repository URL.
    """
    from huggingface_hub import HfApi

    from scf.hub import upload_redacted

    return upload_redacted(HfApi(), folder, repo_id=repo_id, repo_type="dataset", private=private,
                           commit_message="scf ingest: benchmark dataset", paths=recorded_paths(Path(folder)))
