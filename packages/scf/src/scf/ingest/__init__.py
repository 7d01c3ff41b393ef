"""``scf ingest``: the twelve public FAS datasets (and generic lists, folders, CSV) into the benchmark dataset.

Modules: `base` (items, reader interface, file walk), `naming` (per-dataset naming rules), `readers` (the
twelve datasets), `lists` (CASIA-FAS and FLIP lists), `generic` (image folder, CSV manifest), `registry`
(source names), `worker` (decode, sample, detect, crop, encode), `runner` (the resumable parallel run),
`card` (dataset cards, summary table, Hub push). User documentation: ``docs/ingest.md``.
"""

from .base import IngestError, Item, Meta, ReaderOptions, Skip
from .registry import SOURCES, canonical_name, get_reader
from .runner import IngestConfig, IngestSummary, run_ingest

__all__ = ["SOURCES", "IngestConfig", "IngestError", "IngestSummary", "Item", "Meta", "ReaderOptions", "Skip",
           "canonical_name", "get_reader", "run_ingest"]
