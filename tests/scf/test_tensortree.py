"""scf.tensortree: nested tensors + plain values as safetensors + JSON, nothing pickled."""

from __future__ import annotations

import json

import pytest


def _adamw_state():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW([{"params": model[0].parameters(), "lr": 1e-3},
                             {"params": model[1].parameters(), "lr": 5e-4, "weight_decay": 0.0}],
                            betas=(0.9, 0.99))
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
    return model, opt


def _assert_same(a, b):
    import torch

    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def test_adamw_state_dict_round_trips_with_tuples_int_keys_and_param_groups(tmp_path):
    import torch

    from scf.tensortree import load_tree, save_tree

    model, opt = _adamw_state()
    saved = opt.state_dict()
    save_tree(saved, tmp_path / "optimizer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optimizer.json", "optimizer.safetensors"]
    assert b"pickle" not in (tmp_path / "optimizer.json").read_bytes()

    loaded = load_tree(tmp_path / "optimizer")
    _assert_same(saved, loaded)
    assert set(loaded["state"]) == {0, 1, 2, 3}  # int parameter ids stay ints
    assert loaded["param_groups"][0]["betas"] == (0.9, 0.99)  # a tuple stays a tuple
    assert loaded["param_groups"][1]["weight_decay"] == 0.0

    fresh = torch.optim.AdamW([{"params": model[0].parameters()}, {"params": model[1].parameters()}])
    fresh.load_state_dict(loaded)  # what the checkpoints do with it
    _assert_same(fresh.state_dict()["state"], saved["state"])


def test_plain_leaves_and_the_stem_naming(tmp_path):
    import torch

    from scf.tensortree import load_tree, save_tree

    tree = {"flag": True, "off": False, "nothing": None, "rate": 0.125, "n": 7, "name": "x",
            "nested": [{"t": torch.arange(3)}, (1.5, None)]}
    save_tree(tree, tmp_path / "rng-rank0")  # the suffix is appended to the name, never replaced
    assert (tmp_path / "rng-rank0.safetensors").is_file() and (tmp_path / "rng-rank0.json").is_file()
    _assert_same(tree, load_tree(tmp_path / "rng-rank0"))
    save_tree({"a": 1}, tmp_path / "v1.2")
    assert (tmp_path / "v1.2.json").is_file() and load_tree(tmp_path / "v1.2") == {"a": 1}


def test_files_with_other_tensor_keys_still_load(tmp_path):
    """The join follows the keys the JSON names: ifas-train's earlier files keyed tensors by their path."""
    import torch
    from safetensors.torch import save_file

    from scf.tensortree import load_tree

    save_file({"state.0.exp_avg": torch.ones(2), "torch": torch.zeros(3, dtype=torch.uint8)},
              str(tmp_path / "old.safetensors"))
    (tmp_path / "old.json").write_text(json.dumps({"__dict__": [
        ["state", {"__dict__": [[0, {"__dict__": [["exp_avg", {"__tensor__": "state.0.exp_avg"}]]}]]}],
        ["rng", {"__tensor__": "torch"}]]}))
    loaded = load_tree(tmp_path / "old")
    assert torch.equal(loaded["state"][0]["exp_avg"], torch.ones(2))
    assert loaded["rng"].dtype == torch.uint8


@pytest.mark.parametrize(("tree", "named"), [({(1, 2): 0}, "tuple"), ({"a": [{1.5: 0}]}, "float"),
                                             ({"a": {1, 2}}, "set"), ({"a": [b"x"]}, "bytes")])
def test_what_json_cannot_hold_is_a_type_error_naming_it(tmp_path, tree, named):
    from scf.tensortree import save_tree

    with pytest.raises(TypeError, match=named):
        save_tree(tree, tmp_path / "bad")
    assert not (tmp_path / "bad.json").exists()


def test_an_unknown_node_or_a_missing_tensor_is_refused():
    import torch

    from scf.tensortree import join_tree

    with pytest.raises(ValueError, match="unexpected node"):
        join_tree({"__dict__": [["a", {"__pickle__": "x"}]]}, {})
    with pytest.raises(KeyError):
        join_tree({"__tensor__": "t1"}, {"t0": torch.zeros(1)})


@pytest.mark.parametrize("visible", [1, 0])
def test_gpu_rng_states_of_more_gpus_than_visible_restore_what_fits_and_warn(monkeypatch, caplog, visible):
    """review23 M1: a checkpoint written where 8 GPUs were visible raised IndexError on a 1-GPU resume (and C_S's
    loader then called the good checkpoint unreadable). Now the visible GPUs get their states, with a warning."""
    import torch

    from scf import tensortree

    state = {**tensortree.rng_state(), "cuda": [torch.full((8,), i, dtype=torch.uint8) for i in range(2)]}
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: visible > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: restored.append((i, s)))
    with caplog.at_level("WARNING", logger="scf.tensortree"):
        tensortree.set_rng_state(state)
    assert [i for i, _ in restored] == list(range(visible))
    assert all(torch.equal(s, state["cuda"][i]) for i, s in restored)
    assert "holds the RNG states of 2 GPU(s), this process sees " + str(visible) in caplog.text
