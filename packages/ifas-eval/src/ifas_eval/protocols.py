"""Cross-domain evaluation protocols: which sources and splits train, and which are tested, per setting.

A protocol is a YAML file (the built-in ones ship as package data in ``ifas_eval/protocol_files/``)::

    name: mcio
    title: "Protocol 1: ..."
    description: ...
    default_data: embedded-sample      # optional: data used when --data is not given
    settings:
      - name: M                        # the key of --checkpoint M=CKPT
        label: "O&C&I->M"
        train: [{source: OULU-NPU, splits: [train, test]}, ...]
        dev: [{source: ..., splits: [dev]}]          # optional: fixes the operating threshold
        test:
          - {source: MSU-MFSD, splits: [test]}       # a test set named after its source
          - name: all-masks                          # or a named union of several selections
            from: [{source: HiFiMask, splits: [test]}, {source: WMCA, splits: [test]}]
          - {source: WMCA, splits: [test], expected_videos: 557, expected_real: 115, expected_fake: 442}

Sources are the benchmark dataset's ``source`` values (the names ``scf ingest`` writes) and splits are
its ``split`` values (`scf.schema.SPLITS`). Unknown keys are errors. ``train`` is informative for
``ifas-eval`` (it shows what a checkpoint of that setting must have been trained on); ``ifas-train``
selects the same rows.

A test entry may state its expected size (``expected_videos``, optionally ``expected_real`` /
``expected_fake``): the number of videos of the reference list it stands for. ``ifas-eval`` counts the videos
a test set holds in the data (before ``--exclude-videos``) and warns, with a caption note under the table,
when they differ: that catches an ingest whose splits are not the protocol's (a WMCA ingest without its
grand-test file puts all 1,679 videos in ``test``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PAPER_SEEDS = (0, 1, 2)
"""The paper reports the mean of three runs; `Protocol.train_commands` prints one run per seed."""
BUILTIN_PROTOCOLS = ("mcio", "mcio-celeba", "one-to-eleven", "one-to-eleven-flip", "sample")
EMBEDDED_SAMPLE = "embedded-sample"
"""``default_data`` value meaning: the embedded synthetic sample (`scf.sample.build_sample`) built in process."""

DATASET_NAMES = (
    "CelebA-Spoof", "MSU-MFSD", "CASIA-FASD", "Idiap Replay-Attack", "OULU-NPU", "SiW", "Rose-Youtu",
    "HKBU-MARs-V1+", "WMCA", "SiW-M-V2", "CASIA-SURF-3DMask", "HiFiMask",
)
"""The twelve source names the built-in paper protocols use; they must equal what ``scf ingest`` writes."""


class ProtocolError(ValueError):
    """A protocol file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Selection:
    """Rows of one source dataset in some of its splits."""

    source: str
    splits: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.source} [{'+'.join(self.splits)}]"


@dataclass(frozen=True)
class ExpectedSize:
    """The size a test set should have: videos, and real / fake videos where the reference list gives them."""

    videos: int
    real: int | None = None
    fake: int | None = None

    def describe(self) -> str:
        if self.real is None or self.fake is None:
            return f"{self.videos} videos"
        return f"{self.videos} videos ({self.real} real / {self.fake} fake)"

    def differs(self, videos: int, real: int, fake: int) -> bool:
        """True when the counts found disagree with any stated expectation."""
        return (videos != self.videos or (self.real is not None and real != self.real)
                or (self.fake is not None and fake != self.fake))


@dataclass(frozen=True)
class TestSet:
    """A named test set: the union of one or more selections, with its expected size when known."""

    name: str
    parts: tuple[Selection, ...]
    expected: ExpectedSize | None = None

    def describe(self) -> str:
        return " + ".join(p.describe() for p in self.parts)


@dataclass(frozen=True)
class Setting:
    """One train -> test setting of a protocol (one checkpoint is trained per setting)."""

    name: str
    label: str
    train: tuple[Selection, ...]
    tests: tuple[TestSet, ...]
    dev: tuple[Selection, ...] = ()


@dataclass(frozen=True)
class Protocol:
    """A cross-domain protocol: settings, each with its training sources and test sets."""

    name: str
    title: str
    description: str
    settings: tuple[Setting, ...]
    default_data: str | None = None
    path: str = ""

    def setting(self, name: str) -> Setting:
        for s in self.settings:
            if s.name == name:
                return s
        raise KeyError(f"protocol {self.name!r} has no setting {name!r}; settings: "
                       f"{', '.join(s.name for s in self.settings)}")

    def train_commands(self, setting: str, corpus: str = "CORPUS", seeds: Sequence[int] = PAPER_SEEDS,
                       ) -> list[str]:
        """The ``ifas-train`` commands (one per seed) that train the checkpoints of one setting on a VQA corpus.

        Each run is ``--seed K --output runs/<protocol>-<setting>-s<K>`` (`run_dir`). When the setting's sources
        train on different splits (``mcio-celeba``: CelebA-Spoof [train], the others [train, test]),
        ``--train-split`` is their union and a source trained on fewer splits is written ``NAME:SPLIT+SPLIT``
        in ``--sources``, which keeps only those splits of it (``ifas-train --sources``).

        Raises:
            ProtocolError: the setting has no training selections.
        """
        import shlex

        chosen = self.setting(setting)
        if not chosen.train:
            raise ProtocolError(f"{self.name}/{setting}: the setting names no training sources")
        union: dict[str, None] = {}
        for sel in chosen.train:
            union.update(dict.fromkeys(sel.splits))
        lines = []
        sources = ",".join(sel.source if set(sel.splits) == set(union) else f"{sel.source}:{'+'.join(sel.splits)}"
                           for sel in chosen.train)
        for k in seeds:
            lines.append(f"ifas-train --dataset {shlex.quote(corpus)} --sources {shlex.quote(sources)} "
                         f"--train-split {','.join(union)} --seed {k} --output {shlex.quote(self.run_dir(setting, k))}")
        return lines

    def finetune_exclusion_hint(self, setting: str) -> str:
        """The ``#`` line `--train-commands` prints before a setting: its targets for ``scf caption
        --finetune-exclude-sources`` (a spoof-aware captioner C_S that never saw their fakes).

        Only test sources the setting does not train on are targets. When every test source is also a training
        source (an intra-dataset setting, e.g. a YAML protocol that trains on one's own data's train split and
        tests on its test split), nothing is suggested: the model trains on those fakes anyway, and leaving them
        out of C_S's fine-tuning set D_S would empty it when they are the corpus's only sources.
        """
        import shlex

        chosen = self.setting(setting)
        targets = dict.fromkeys(p.source for t in chosen.tests for p in t.parts)
        trained = {sel.source for sel in chosen.train}
        outside = [t for t in targets if t not in trained]
        inside = [t for t in targets if t in trained]
        if not outside:
            return (f"# {setting}: its test sources ({', '.join(inside)}) are training sources too (intra-dataset): "
                    "no scf caption --finetune-exclude-sources to suggest (leaving them out of C_S's fine-tuning "
                    "would leave D_S without their fakes, empty when they are the corpus's only sources)")
        line = (f"# {setting}: the corpus's C_S saw every dataset's fakes (the paper pools them); for one that never "
                f"saw the targets: scf caption ... --finetune-exclude-sources {shlex.quote(','.join(outside))}")
        if inside:
            line += f" ({', '.join(inside)} not listed: the setting trains on it)"
        return line

    def run_dir(self, setting: str, seed: int) -> str:
        """The run folder `train_commands` gives one seed of one setting: ``runs/<protocol>-<setting>-s<seed>``."""
        return f"runs/{self.name}-{setting}-s{seed}"

    def eval_command(self, settings: Sequence[str] | None = None, data: str = "BENCHMARK",
                     seeds: Sequence[int] = PAPER_SEEDS) -> str:
        """The ``ifas-eval`` line that evaluates the `train_commands` runs: mean ± std over the seeds per cell."""
        import shlex

        names = list(settings) if settings else [s.name for s in self.settings]
        ckpts = " ".join(f"--checkpoint {shlex.quote(f'{s}={self.run_dir(s, k)}/final')}"
                         for s in names for k in seeds)
        only = " ".join(f"--setting {shlex.quote(s)}" for s in names) if settings else ""
        proto = self.path if self.path and not self.path.startswith("built-in protocol ") else self.name
        return " ".join(x for x in (f"ifas-eval --protocol {shlex.quote(proto)} --data {shlex.quote(data)}",
                                    only, ckpts) if x)

    def sources(self) -> list[str]:
        """Every source named by the protocol (train, dev and test), in first-seen order."""
        seen: dict[str, None] = {}
        for s in self.settings:
            for sel in (*s.train, *s.dev, *(p for t in s.tests for p in t.parts)):
                seen.setdefault(sel.source, None)
        return list(seen)


def _check_keys(obj: Any, allowed: set[str], where: str, file: str) -> dict:
    if not isinstance(obj, dict):
        raise ProtocolError(f"{file}: {where} must be a mapping, got {type(obj).__name__}")
    unknown = set(obj) - allowed
    if unknown:
        raise ProtocolError(f"{file}: {where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                            f"(allowed: {', '.join(sorted(allowed))})")
    return obj


def _selection(obj: Any, where: str, file: str) -> Selection:
    from scf.schema import SPLITS

    d = _check_keys(obj, {"source", "splits"}, where, file)
    source = d.get("source")
    if not isinstance(source, str) or not source:
        raise ProtocolError(f"{file}: {where}: 'source' must be a non-empty string")
    splits = d.get("splits")
    if isinstance(splits, str):
        splits = [splits]
    if not isinstance(splits, list) or not splits:
        raise ProtocolError(f"{file}: {where}: 'splits' must be a non-empty list of {', '.join(SPLITS)}")
    for sp in splits:
        if sp not in SPLITS:
            raise ProtocolError(f"{file}: {where}: split {sp!r} is not one of {', '.join(SPLITS)}")
    return Selection(source, tuple(splits))


def _selections(obj: Any, where: str, file: str, *, required: bool) -> tuple[Selection, ...]:
    if obj is None and not required:
        return ()
    if not isinstance(obj, list) or (required and not obj):
        raise ProtocolError(f"{file}: {where} must be a non-empty list of {{source, splits}}")
    return tuple(_selection(o, f"{where}[{i}]", file) for i, o in enumerate(obj))


EXPECTED_KEYS = ("expected_videos", "expected_real", "expected_fake")


def _expected(d: dict, where: str, file: str) -> ExpectedSize | None:
    values = {}
    for key in EXPECTED_KEYS:
        v = d.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ProtocolError(f"{file}: {where}: {key!r} must be a non-negative integer, got {v!r}")
        values[key] = v
    if not values:
        return None
    if "expected_videos" not in values:
        raise ProtocolError(f"{file}: {where}: expected_real / expected_fake need 'expected_videos'")
    exp = ExpectedSize(values["expected_videos"], values.get("expected_real"), values.get("expected_fake"))
    if exp.real is not None and exp.fake is not None and exp.real + exp.fake != exp.videos:
        raise ProtocolError(f"{file}: {where}: expected_real + expected_fake = {exp.real + exp.fake}, "
                            f"not expected_videos {exp.videos}")
    return exp


def _test_set(obj: Any, where: str, file: str) -> TestSet:
    if isinstance(obj, dict) and "from" in obj:
        d = _check_keys(obj, {"name", "from", *EXPECTED_KEYS}, where, file)
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"{file}: {where}: a test set with 'from' needs a 'name'")
        return TestSet(name, _selections(d["from"], f"{where}.from", file, required=True), _expected(d, where, file))
    d = _check_keys(obj, {"source", "splits", *EXPECTED_KEYS}, where, file)
    sel = _selection({k: v for k, v in d.items() if k not in EXPECTED_KEYS}, where, file)
    return TestSet(sel.source, (sel,), _expected(d, where, file))


def parse_protocol(data: Any, file: str = "<protocol>") -> Protocol:
    """Build a `Protocol` from parsed YAML, checking every key.

    Raises:
        ProtocolError: naming the file and the offending key.
    """
    d = _check_keys(data, {"name", "title", "description", "default_data", "settings"}, "top level", file)
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{file}: 'name' must be a non-empty string")
    raw_settings = d.get("settings")
    if not isinstance(raw_settings, list) or not raw_settings:
        raise ProtocolError(f"{file}: 'settings' must be a non-empty list")
    settings = []
    for i, s in enumerate(raw_settings):
        where = f"settings[{i}]"
        sd = _check_keys(s, {"name", "label", "train", "dev", "test"}, where, file)
        s_name = sd.get("name")
        if not isinstance(s_name, str) or not s_name or "=" in s_name:
            raise ProtocolError(f"{file}: {where}: 'name' must be a non-empty string without '='")
        raw_tests = sd.get("test")
        if not isinstance(raw_tests, list) or not raw_tests:
            raise ProtocolError(f"{file}: {where}.test must be a non-empty list")
        tests = tuple(_test_set(t, f"{where}.test[{j}]", file) for j, t in enumerate(raw_tests))
        names = [t.name for t in tests]
        if len(set(names)) != len(names):
            raise ProtocolError(f"{file}: {where}: test set names repeat: {names}")
        settings.append(Setting(
            name=s_name,
            label=str(sd.get("label") or s_name),
            train=_selections(sd.get("train"), f"{where}.train", file, required=False),
            tests=tests,
            dev=_selections(sd.get("dev"), f"{where}.dev", file, required=False),
        ))
    s_names = [s.name for s in settings]
    if len(set(s_names)) != len(s_names):
        raise ProtocolError(f"{file}: setting names repeat: {s_names}")
    default_data = d.get("default_data")
    if default_data is not None and not isinstance(default_data, str):
        raise ProtocolError(f"{file}: 'default_data' must be a string")
    return Protocol(name=name, title=str(d.get("title") or name), description=str(d.get("description") or ""),
                    settings=tuple(settings), default_data=default_data, path=file)


def load_protocol(name_or_path: str) -> Protocol:
    """A built-in protocol by name (`BUILTIN_PROTOCOLS`) or a user protocol from a YAML file.

    Raises:
        ProtocolError: unknown name, unreadable file, or a malformed protocol.
    """
    import yaml

    if name_or_path in BUILTIN_PROTOCOLS:
        from importlib.resources import files

        resource = files("ifas_eval") / "protocol_files" / f"{name_or_path}.yaml"
        text, file = resource.read_text(), f"built-in protocol {name_or_path}"
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ProtocolError(f"unknown protocol {name_or_path!r}: not one of {', '.join(BUILTIN_PROTOCOLS)} "
                                "and not a YAML file (for your own data, write one: docs/evaluation.md, 'Your own "
                                "protocol')")
        try:
            text, file = path.read_text(), str(path)
        except UnicodeDecodeError as e:
            raise ProtocolError(f"{path}: not a text file ({e.reason}): a protocol is a YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # as ifas-train --config and scf caption --keywords: the problem and its 1-based line and column
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ProtocolError(f"{file}: not valid YAML: {what}{where}") from None
    return parse_protocol(data, file)


def builtin_protocols() -> list[Protocol]:
    """All built-in protocols, parsed."""
    return [load_protocol(n) for n in BUILTIN_PROTOCOLS]
