"""Assembling the VQA corpus D_cap from the benchmark rows and their captions (Algorithm 1 lines 11-12).

Reals take the general caption T_R, fakes the spoof-aware caption T_S; every row gets the fixed question,
the judgment ("Yes" real, "No" fake) and the interpretation "This is <caption>" (paper eq. 3). The general
caption of every row is kept in ``caption_general`` and the matched spoof keyword in ``keyword``.

Interpretation modes (the text-format ablation of the paper's Table 4):

* ``spoof`` (default): fakes use T_S; the paper's I-FAS corpus ``T_Judgment, {T_R, T_S}``.
* ``general``: fakes use their general caption T_F; ``T_Judgment, {T_R, T_F}``.
* ``none``: judgment only (empty interpretation, empty caption); ``T_Judgment``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scf.schema import LABEL_REAL, QUESTION, compose_answer, interpretation_for, judgment_for

INTERPRETATIONS = ("spoof", "general", "none")
CORPUS_DIRS = {"spoof": "corpus", "general": "corpus-general", "none": "corpus-judgment"}
"""Output subfolder of each mode, so the ablation corpora sit beside the main one."""


def vqa_row(row: Mapping[str, Any], *, caption_general: str, caption_spoof: str | None, captioner_general: str,
            captioner_spoof: str | None, keyword: str, interpretation: str = "spoof") -> dict[str, Any]:
    """One VQA corpus row from a benchmark row and its captions.

    Args:
        row: the benchmark row (its columns are copied unchanged).
        caption_general: C_G's caption of the image (T_R for reals, T_F for fakes).
        caption_spoof: C_S's caption (T_S) of a fake; ignored for reals.
        captioner_general: id or path of C_G.
        captioner_spoof: id or path of C_S.
        keyword: the keyword of the fake's own attack type found in ``caption_general`` ("" if none).
        interpretation: ``spoof``, ``general`` or ``none`` (module docstring).

    Raises:
        ValueError: an unknown mode, or a fake without a spoof-aware caption in ``spoof`` mode.
    """
    if interpretation not in INTERPRETATIONS:
        raise ValueError(f"interpretation must be one of {', '.join(INTERPRETATIONS)}, got {interpretation!r}")
    real = int(row["label"]) == LABEL_REAL
    if interpretation == "none":
        caption, captioner = "", ""
    elif real or interpretation == "general":
        caption, captioner = caption_general, captioner_general
    else:
        if caption_spoof is None or captioner_spoof is None:
            raise ValueError(f"fake row {row.get('path')!r} has no spoof-aware caption")
        caption, captioner = caption_spoof, captioner_spoof
    judgment = judgment_for(row["label"])
    interp = interpretation_for(caption) if caption else ""
    out = dict(row)
    out.update(
        question=QUESTION, judgment=judgment, interpretation=interp, answer=compose_answer(judgment, interp),
        caption=caption, caption_general=caption_general, captioner=captioner,
        captioner_general=captioner_general, keyword="" if real else keyword,
    )
    return out


def dataset_card(*, title: str, splits: Mapping[str, int], config: Mapping[str, Any],
                 filter_stats: Mapping[str, Mapping[str, int]] | None, samples: list[Mapping[str, str]],
                 interpretation: str) -> str:
    """The corpus's ``README.md``: Hub metadata, what it is, the run configuration, filter statistics, samples."""
    import json

    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        *[f"  - split: {s}\n    path: data/{s}-*.parquet" for s in splits],
        "task_categories:",
        "- visual-question-answering",
        "tags:",
        "- face-anti-spoofing",
        "- i-fas",
        "---",
        "",
        f"# {title}",
        "",
        "VQA corpus for interpretable face anti-spoofing (I-FAS), written by `scf caption` with Spoof-aware "
        "Captioning and Filtering (SCF, Algorithm 1 of the I-FAS paper). Every row asks "
        f"\"{QUESTION}\" and answers with a judgment (Yes = real, No = fake) and an interpretation "
        "\"This is <caption>\".",
        "",
        f"Interpretation mode: `{interpretation}` "
        + {"spoof": "(reals: general caption T_R; fakes: spoof-aware caption T_S).",
           "general": "(reals and fakes: general captions T_R / T_F; the T_F ablation of Table 4).",
           "none": "(judgment only; the T_Judgment ablation of Table 4)."}[interpretation],
        "",
        "| split | rows |",
        "|---|---|",
        *[f"| {s} | {n} |" for s, n in splits.items()],
        "",
    ]
    if filter_stats:
        lines += ["## Keyword filter (spoof-aware set D_S)", "",
                  "Fakes whose general caption contains a keyword of their own attack type.", "",
                  "| attack type | kept | total | kept % |", "|---|---|---|---|"]
        for attack, s in filter_stats.items():
            pct = 100.0 * s["kept"] / s["total"] if s["total"] else 0.0
            lines.append(f"| {attack} | {s['kept']} | {s['total']} | {pct:.1f} |")
        lines.append("")
    if samples:
        lines += ["## Sample captions", "", "| label | attack type | keyword | general caption | caption used |",
                  "|---|---|---|---|---|"]
        for s in samples:
            cells = [s["label"], s["attack_type"], s["keyword"], s["caption_general"], s["caption"]]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        lines.append("")
    lines += ["## Run configuration", "", "```json", json.dumps(config, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)
