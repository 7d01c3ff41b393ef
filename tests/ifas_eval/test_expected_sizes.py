"""Protocol ``expected_videos``: parsed and checked, and ``ifas-eval`` flags a test set of another size."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ifas_eval.protocols import ExpectedSize, ProtocolError, load_protocol, parse_protocol

PROTOCOL = """\
name: sized
default_data: embedded-sample
settings:
  - name: a
    train: [{source: sample-domain-b, splits: [train]}]
    test:
      - {source: sample-domain-a, splits: [test], expected_videos: 15, expected_real: 5, expected_fake: 10}
      - name: all-of-c                 # like a raw HiFiMask ingest: every subject lands in the test set
        from: [{source: sample-domain-c, splits: [train, test]}]
        expected_videos: 15
      - {source: sample-domain-d, splits: [test]}
"""


def test_expected_sizes_parse_and_are_checked():
    p = load_protocol("one-to-eleven")
    sizes = {t.name: t.expected for t in p.settings[0].tests}
    assert sizes["HiFiMask"] == ExpectedSize(17362, 4335, 13027)
    assert sizes["WMCA"] == ExpectedSize(557, 115, 442)
    assert sizes["MSU-MFSD"].videos == 160 and sizes["OULU-NPU"].videos == 1800
    assert sizes["SiW"].videos == 2054 and sizes["HKBU-MARs-V1+"].videos == 1008
    assert sizes["CASIA-SURF-3DMask"].videos == 1146
    assert sizes["Rose-Youtu"] is None and sizes["SiW-M-V2"] is None  # no public list to count
    assert ExpectedSize(15, 5, 10).differs(15, 6, 9) and not ExpectedSize(15).differs(15, 6, 9)
    base = {"name": "x", "settings": [{"name": "s", "test": [{"source": "A", "splits": ["test"]}]}]}
    for extra, match in (({"expected_videos": -1}, "non-negative integer"),
                         ({"expected_videos": "ten"}, "non-negative integer"),
                         ({"expected_real": 3}, "need 'expected_videos'"),
                         ({"expected_videos": 10, "expected_real": 3, "expected_fake": 3}, "not expected_videos 10"),
                         ({"expected_size": 10}, "unknown key")):
        base["settings"][0]["test"] = [{"source": "A", "splits": ["test"], **extra}]
        with pytest.raises(ProtocolError, match=match):
            parse_protocol(base, "p.yaml")


def test_eval_warns_and_captions_a_test_set_of_another_size(tiny_ckpt, tmp_path):
    from ifas_eval.cli import main

    proto = tmp_path / "sized.yaml"
    proto.write_text(PROTOCOL)
    res = CliRunner().invoke(main, ["--protocol", str(proto), "--checkpoint", str(tiny_ckpt), "--out",
                                    str(tmp_path / "e"), "--no-report", "--json"])
    assert res.exit_code == 0, res.output
    results = {r["test_set"]: r for r in json.loads(res.stdout)["results"]}
    assert "size_check" not in results["sample-domain-a"]  # 15 = 5 real + 10 fake, as expected
    assert "size_check" not in results["sample-domain-d"]  # no expectation stated
    c = results["all-of-c"]
    # the count is the scored set's: train + test of domain c, more than the 15 stated
    found = {"videos": c["n_samples"], "real": c["n_real"], "fake": c["n_fake"]}
    assert c["size_check"] == {"expected": {"videos": 15, "real": None, "fake": None}, "found": found}
    assert found["videos"] > 15
    warning = " ".join(res.stderr.split())
    assert warning.count("the protocol expects") == 1
    assert (f"a/all-of-c: the data holds {found['videos']} videos ({found['real']} real / {found['fake']} fake) "
            "for sample-domain-c [train+test]; the protocol expects 15 videos.") in warning
    md = (tmp_path / "e" / "results.md").read_text()
    assert ("Test-set size differs from the protocol's expected size (before --exclude-videos): "
            f"a/all-of-c {found['videos']} videos (expected 15).") in " ".join(md.split())
