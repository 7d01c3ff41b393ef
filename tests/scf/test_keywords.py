"""The keyword dictionary K and the SCF filter rule (Algorithm 1 lines 3-9) on fixed caption strings."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from scf.captioning.keywords import KeywordError, keyword_pattern, load_keywords, suggest_keywords
from scf.schema import SPOOF_TYPES


@pytest.fixture(scope="module")
def k():
    return load_keywords()


def test_default_dictionary_ships_as_package_data_and_covers_every_attack_type(k):
    text = resources.files("scf.captioning").joinpath("keywords.yaml").read_text()
    data = yaml.safe_load(text)
    assert data["mode"] == "extend"
    assert set(data["keywords"]) == set(SPOOF_TYPES)
    assert k.attack_types == SPOOF_TYPES
    assert {"paper", "photo", "printed", "poster", "picture"} <= set(k.keywords["print"])
    assert {"screen", "monitor", "display", "phone", "tablet", "laptop", "computer", "ipad"} <= set(k.keywords["replay"])
    assert "mask" in k.keywords["mask"] and {"mannequin", "doll"} <= set(k.keywords["mannequin"])
    assert k.sources == ("scf.captioning/keywords.yaml",)


@pytest.mark.parametrize(
    ("caption", "attack", "expected"),
    [
        ("a man holding a piece of paper", "print", "paper"),
        ("a woman in front of two screens", "replay", "screen"),  # plural
        ("a man wearing glasses", "other", "glasses"),
        ("two dummies in a shop window", "mannequin", "dummy"),  # y -> ies plural
        ("a face on a Cell-Phone", "replay", "cell phone"),  # case, hyphen between the words
        ("A POSTER of a man", "print", "poster"),
        ("a masked man", "mask", ""),  # whole words only: "masked" is not "mask"
        ("a damask curtain", "mask", ""),
        ("a screenshot of a man", "replay", ""),  # "screenshot" is not "screen"
        ("a newspaperman smiling", "print", ""),
        ("a woman looking at a phone screen", "print", ""),  # replay words never keep a print attack
        ("a man holding a printed paper photo", "replay", ""),
        ("a man holding a printed paper photo", "print", "printed"),  # the earliest keyword in the caption
        ("", "print", ""),
    ],
)
def test_match_uses_only_the_keywords_of_the_fakes_own_type(k, caption, attack, expected):
    assert k.match(caption, attack) == expected


def test_find_all_reports_every_type(k):
    found = k.find_all("a man holds a paper mask in front of a laptop")
    assert found == {"print": ["paper"], "replay": ["laptop"], "mask": ["mask"]}


def test_keyword_pattern_plurals():
    assert keyword_pattern("glass").search("two glasses")
    assert keyword_pattern("screen").search("screens") and not keyword_pattern("screen").search("screened")
    assert keyword_pattern("toy").search("toys")  # vowel before y: plain s


def test_user_file_extends_by_default_and_can_replace(tmp_path):
    extend = tmp_path / "extra.yaml"
    extend.write_text("keywords:\n  print: [Flyer, paper]\n  mask: [balaclava]\n")
    k = load_keywords(extend)
    assert k.keywords["print"][-1] == "flyer" and k.keywords["print"].count("paper") == 1
    assert k.match("a man behind a balaclava", "mask") == "balaclava"
    assert k.sources[-1] == str(extend) and len(k.sources) == 2
    assert k.fingerprint() != load_keywords().fingerprint()

    replace = tmp_path / "only.yaml"
    replace.write_text("mode: replace\nkeywords:\n  replay: [screen]\n")
    k = load_keywords(replace)
    assert k.attack_types == ("replay",)
    assert k.match("a printed paper", "print") == ""
    assert k.sources == (str(replace),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keywords:\n  printing: [paper]\n", "attack type 'printing'"),
        ("keywords:\n  live: [face]\n", "'live' is the type of real rows"),
        ("mode: merge\nkeywords:\n  print: [paper]\n", "mode must be"),
        ("keywords:\n  print: paper\n", "must be a list of strings"),
        ("keywords:\n  print: ['pa$per']\n", "keyword 'pa$per'"),
        ("words:\n  print: [paper]\n", "unknown key(s) words"),
        ("keywords: [\n", "not valid YAML"),
    ],
)
def test_bad_user_files_name_the_file_and_the_entry(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(KeywordError) as info:
        load_keywords(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(KeywordError, match="not found"):
        load_keywords(tmp_path / "nope.yaml")


def test_suggest_keywords_skips_stopwords():
    words = suggest_keywords(["a man in front of a green wall", "a woman with a green wall behind her"], 2)
    assert words == ["green", "wall"]


def test_a_keyword_file_is_read_as_utf8_whatever_the_locale(tmp_path):
    """Review 16 L3: the file was read in the locale's encoding; it is UTF-8 (and a latin-1 file is one line)."""
    good = tmp_path / "k.yaml"
    good.write_bytes("# mots clés\nmode: extend\nkeywords:\n  print: [papier]\n".encode())
    assert "papier" in load_keywords(good).keywords["print"]
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("# mots clés\nmode: extend\nkeywords:\n  print: [papier]\n".encode("latin-1"))
    with pytest.raises(KeywordError, match=rf"^{latin1}: not UTF-8 text \(invalid continuation byte at byte 9\); "
                                           "save it as UTF-8$"):
        load_keywords(latin1)
