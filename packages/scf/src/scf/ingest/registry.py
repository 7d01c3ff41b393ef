"""The sources ``scf ingest --source`` accepts: the twelve datasets and the generic readers, with aliases."""

from __future__ import annotations

from .base import IngestError, Reader
from .generic import CsvManifestReader, ImageFolderReader
from .lists import CasiaFasListReader, FlipListReader
from .readers import DATASET_READERS

GENERIC_READERS: tuple[type[Reader], ...] = (FlipListReader, CasiaFasListReader, ImageFolderReader,
                                             CsvManifestReader)
SOURCES: dict[str, type[Reader]] = {cls.name: cls for cls in (*DATASET_READERS, *GENERIC_READERS)}
"""Registry name -> reader class."""

ALIASES = {
    "celeba": "celeba-spoof", "msu": "msu-mfsd", "casia": "casia-fasd", "casia-mfsd": "casia-fasd",
    "replay": "replay-attack", "idiap": "replay-attack", "oulu": "oulu-npu", "rose": "rose-youtu",
    "hkbu": "hkbu-mars", "hkbu-mars-v1+": "hkbu-mars", "siw-m": "siw-m-v2", "siw-mv2": "siw-m-v2",
    "3dmask": "casia-surf-3dmask", "hifi-mask": "hifimask", "flip": "flip-mcio", "mcio": "flip-mcio",
    "casia-fas": "casia-fas-list", "folder": "image-folder", "manifest": "csv",
}


def canonical_name(name: str) -> str:
    """The registry name of a source name or alias (case-insensitive; ``OULU-NPU`` -> ``oulu-npu``).

    Raises:
        IngestError: an unknown source, with the list of known ones.
    """
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = ALIASES.get(key, key)
    if key not in SOURCES:
        raise IngestError(f"unknown source {name!r}; known: {', '.join(SOURCES)} (scf ingest --list-sources)")
    return key


def get_reader(name: str) -> Reader:
    """A fresh reader for a source name or alias."""
    return SOURCES[canonical_name(name)]()
