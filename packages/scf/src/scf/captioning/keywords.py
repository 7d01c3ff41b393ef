"""The spoof-aware keyword dictionary K and the caption filter of SCF (paper, Algorithm 1 lines 3-9).

The dictionary maps each attack type to the words a general captioner uses when it sees that attack's
medium ("paper" -> print, "screen" -> replay, ...). A fake is kept for the spoof-aware set D_S only when its
general caption T_F contains a keyword of the fake's *own* attack type: a printed photo captioned
"a man looking at a phone screen" is not kept, because "screen" is a replay word.

Matching rules (our choice; the paper only says "k in T_F"): case-insensitive, whole words (regular
expression word boundaries, so "mask" does not match "masked" nor "damask"), the regular English plural
accepted ("screen"/"screens", "glass"/"glasses", "dummy"/"dummies"), and the words of a multi-word
keyword separated by any whitespace or hyphen ("cell phone", "cell-phone").

The default dictionary ships as ``keywords.yaml`` in this package; a user file of the same layout
extends it (``mode: extend``, the default) or replaces it (``mode: replace``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from scf.schema import SPOOF_TYPES

logger = logging.getLogger(__name__)

DEFAULT_KEYWORDS_FILE = "keywords.yaml"
"""Name of the packaged default dictionary inside `scf.captioning`."""

_MODES = ("extend", "replace")
_TOP_KEYS = {"mode", "keywords"}
_KEYWORD_RE = re.compile(r"^[a-z0-9]+(?:[ \-][a-z0-9]+)*$")

# Words never worth suggesting as keywords: articles, prepositions and the words of any face caption.
_STOPWORDS = frozenset(
    "a an the of in on at with and or to is are his her their its this that it from for by as into over "
    "under front behind near next background man woman person people face head boy girl young old "
    "looking wearing holding has have there be who some one two".split()
)


class KeywordError(ValueError):
    """The keyword dictionary file is malformed; the message names the file and the entry."""


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """The compiled whole-word, plural-aware, case-insensitive pattern of one keyword.

    Args:
        keyword: lower-case word or words separated by single spaces or hyphens.

    Returns:
        A pattern that matches the keyword and its regular plural as whole words.
    """
    words = re.split(r"[ \-]", keyword)
    body = r"[\s\-]+".join(re.escape(w) for w in words[:-1])
    last = words[-1]
    if len(last) > 2 and last.endswith("y") and last[-2] not in "aeiou":
        tail = re.escape(last[:-1]) + r"(?:y|ies)"  # dummy -> dummies
    else:
        tail = re.escape(last) + r"(?:s|es)?"  # screen -> screens, glass -> glasses
    body = f"{body}[\\s\\-]+{tail}" if body else tail
    return re.compile(rf"\b{body}\b", re.IGNORECASE)


@dataclass(frozen=True)
class KeywordDictionary:
    """The keyword dictionary K: attack type -> keywords, with compiled patterns.

    Attributes:
        keywords: attack type -> keywords in priority order (types from `scf.schema.SPOOF_TYPES`).
        sources: the files the dictionary was read from, in order (default file first).
    """

    keywords: Mapping[str, tuple[str, ...]]
    sources: tuple[str, ...] = ()
    _patterns: dict[str, list[tuple[str, re.Pattern[str]]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
        for attack, words in self.keywords.items():
            if attack not in SPOOF_TYPES:
                raise KeywordError(f"attack type {attack!r} is not one of {', '.join(SPOOF_TYPES)}")
            patterns[attack] = [(w, keyword_pattern(w)) for w in words]
        object.__setattr__(self, "_patterns", patterns)

    @property
    def attack_types(self) -> tuple[str, ...]:
        """Attack types with at least one keyword, in vocabulary order."""
        return tuple(t for t in SPOOF_TYPES if self.keywords.get(t))

    def match(self, caption: str, attack_type: str) -> str:
        """The keyword of ``attack_type`` found in ``caption`` ("" if none): Algorithm 1, line 5.

        When several keywords of the type occur, the one that occurs first in the caption is returned (ties:
        dictionary order). Keywords of other attack types are ignored.
        """
        best: tuple[int, int, str] | None = None
        for rank, (word, pattern) in enumerate(self._patterns.get(attack_type, ())):
            m = pattern.search(caption)
            if m and (best is None or (m.start(), rank) < best[:2]):
                best = (m.start(), rank, word)
        return best[2] if best else ""

    def find_all(self, caption: str) -> dict[str, list[str]]:
        """Every attack type whose keywords occur in ``caption``, with those keywords (for diagnostics)."""
        found: dict[str, list[str]] = {}
        for attack, patterns in self._patterns.items():
            words = [w for w, p in patterns if p.search(caption)]
            if words:
                found[attack] = words
        return found

    def to_dict(self) -> dict[str, list[str]]:
        """Plain mapping (vocabulary order), as written into the run configuration."""
        return {t: list(self.keywords[t]) for t in SPOOF_TYPES if t in self.keywords}

    def fingerprint(self) -> str:
        """Short SHA-256 of the dictionary's content; a resumed run checks it did not change."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _parse(data: Any, where: str) -> tuple[str, dict[str, list[str]]]:
    """Validate one YAML document; return (mode, attack type -> keywords)."""
    if not isinstance(data, dict):
        raise KeywordError(f"{where}: expected a mapping with 'keywords:' (and optionally 'mode:')")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise KeywordError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; allowed: mode, keywords")
    mode = data.get("mode", "extend")
    if mode not in _MODES:
        raise KeywordError(f"{where}: mode must be 'extend' or 'replace', got {mode!r}")
    table = data.get("keywords")
    if not isinstance(table, dict) or not table:
        raise KeywordError(f"{where}: 'keywords' must map attack types to lists of words")
    parsed: dict[str, list[str]] = {}
    for attack, words in table.items():
        if attack == "live":
            raise KeywordError(f"{where}: 'live' is the type of real rows; keywords are for attack types only")
        if attack not in SPOOF_TYPES:
            raise KeywordError(f"{where}: attack type {attack!r} is not one of {', '.join(SPOOF_TYPES)}")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise KeywordError(f"{where}: keywords of {attack!r} must be a list of strings")
        clean = []
        for w in words:
            norm = " ".join(w.lower().split())
            if not _KEYWORD_RE.match(norm):
                raise KeywordError(f"{where}: keyword {w!r} of {attack!r} must be letters/digits, words separated "
                                   "by a space or hyphen")
            clean.append(norm)
        parsed[attack] = clean
    return mode, parsed


def _yaml_problem(error: Exception) -> str:
    """PyYAML's multi-line message in one line: the problem and its 1-based line and column."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def _read_yaml(path: Path | None) -> tuple[str, dict[str, list[str]], str]:
    import yaml

    if path is None:
        text = resources.files("scf.captioning").joinpath(DEFAULT_KEYWORDS_FILE).read_text(encoding="utf-8")
        where = f"scf.captioning/{DEFAULT_KEYWORDS_FILE}"
    else:
        if not path.is_file():
            raise KeywordError(f"keyword file not found: {path}")
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as e:
            raise KeywordError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise KeywordError(f"{where}: not valid YAML ({_yaml_problem(e)})") from e
    mode, parsed = _parse(data, where)
    return mode, parsed, where


def load_keywords(path: str | Path | None = None) -> KeywordDictionary:
    """Load the keyword dictionary: the packaged default, extended or replaced by a user YAML file.

    Args:
        path: optional user file (layout of the packaged ``keywords.yaml``). With ``mode: extend`` (default)
            its keywords are appended to the defaults of the same type (duplicates dropped); with
            ``mode: replace`` the file is the whole dictionary.

    Raises:
        KeywordError: a missing or malformed file, an unknown attack type or an invalid keyword.
    """
    _, merged, default_where = _read_yaml(None)
    sources = [default_where]
    if path is not None:
        mode, user, where = _read_yaml(Path(path).expanduser())
        sources.append(where)
        if mode == "replace":
            merged, sources = {}, [where]
        for attack, words in user.items():
            merged.setdefault(attack, [])
            merged[attack] += [w for w in words if w not in merged[attack]]
    return KeywordDictionary({t: tuple(merged[t]) for t in SPOOF_TYPES if merged.get(t)}, tuple(sources))


def suggest_keywords(captions: Iterable[str], n: int = 8, *, keywords: KeywordDictionary | None = None,
                     attack_type: str | None = None) -> list[str]:
    """The ``n`` most frequent content words of some captions: candidate keywords for a type with no match.

    Args:
        captions: the general captions of the fakes of one attack type that matched none of its keywords.
        n: how many words to propose.
        keywords: the dictionary in use; a word that is (or is the plural of) a keyword of an attack type other
            than ``attack_type`` is never proposed: adding "paper" to ``replay`` would let print-like captions
            admit replay fakes into D_S.
        attack_type: the type the suggestions are for (None with ``keywords``: drop the keywords of every type).
            For ``other``, the type of fakes whose attack type was not given (an ``image-folder`` ``fake/``
            folder, a manifest without ``attack_type``), other types' keywords *are* proposed: the medium words
            ("photo", "screen") are what such captions name, and the type of those fakes is unknown anyway.
    """
    catch_all = attack_type == "other"

    def allowed(word: str) -> bool:
        if word in _STOPWORDS:
            return False
        return keywords is None or catch_all or not any(t != attack_type for t in keywords.find_all(word))

    counts: Counter[str] = Counter()
    for caption in captions:
        counts.update(w for w in re.findall(r"[a-z][a-z\-]+", caption.lower()) if allowed(w))
    return [w for w, _ in counts.most_common(n)]
