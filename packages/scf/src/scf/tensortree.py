"""Nested tensors and plain values saved as ``<stem>.safetensors`` + ``<stem>.json``: nothing is pickled.

Also the RNG state of a training process as such a tree (`rng_state` / `set_rng_state`), so that a resumed
run draws the same dropout masks and shuffles as an uninterrupted one."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

__all__ = ["join_tree", "load_tree", "rng_state", "save_tree", "set_rng_state", "split_tree"]


def split_tree(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:  # noqa: ANN401 - a JSON-able tree
    """Replace every tensor of a nested dict/list/tuple by ``{"__tensor__": key}``, collecting the tensors.

    Dicts become ``{"__dict__": [[key, value], ...]}`` (so int keys, e.g. an optimizer's parameter ids, stay
    ints), lists ``{"__list__": [...]}`` and tuples ``{"__tuple__": [...]}``; None, bools, ints, floats and
    strings stay as they are. The tensors (detached, on CPU, contiguous) are added to ``tensors`` under the keys
    ``t0``, ``t1``, ... in the order they are met (files of earlier versions used other keys: `join_tree` only
    follows the keys the structure names).

    Args:
        obj: the tree, e.g. an optimizer's ``state_dict()``.
        tensors: where the tensors go (usually empty; keys already in it are not reused).

    Returns:
        The structure, JSON-serialisable.

    Raises:
        TypeError: a dict key that is not an int or a str, or a leaf that is none of the above (JSON cannot
            hold it without pickling); the message names the type and where it is in the tree.
    """
    return _split(obj, tensors, "")


def _split(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:  # noqa: ANN401
    import torch

    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        while key in tensors:
            key += "_"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, int | str):
                raise TypeError(f"cannot store the dict key {k!r} ({type(k).__name__}) at '{where or '/'}' "
                                "without pickling: keys must be int or str")
        return {"__dict__": [[k, _split(v, tensors, f"{where}/{k}")] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return {"__tuple__" if isinstance(obj, tuple) else "__list__":
                [_split(v, tensors, f"{where}/{i}") for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} at '{where or '/'}' without pickling")


def join_tree(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:  # noqa: ANN401 - a JSON-able tree
    """The inverse of `split_tree`.

    Args:
        obj: the structure `split_tree` returned (e.g. parsed back from JSON).
        tensors: the tensors by key (e.g. ``safetensors.torch.load_file``).

    Returns:
        The tree, with tuples and int dict keys as they were.

    Raises:
        KeyError: the structure names a tensor that ``tensors`` lacks.
        ValueError: a JSON object that is none of the nodes `split_tree` writes.
    """
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: join_tree(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            return [join_tree(v, tensors) for v in obj["__list__"]]
        if "__tuple__" in obj:
            return tuple(join_tree(v, tensors) for v in obj["__tuple__"])
        raise ValueError(f"unexpected node {sorted(obj)[:3]}")
    if isinstance(obj, list):  # never written by split_tree; JSON arrays are wrapped in __list__/__tuple__
        raise ValueError("unexpected bare JSON array")
    return obj


def _files(stem: Path) -> tuple[Path, Path]:
    """The two files of a tree: ``<stem>.safetensors`` and ``<stem>.json`` (the suffix is appended to the name)."""
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_tree(obj: Any, stem: Path) -> None:  # noqa: ANN401 - e.g. an optimizer's state_dict
    """Save a nested structure of tensors and plain values as ``<stem>.safetensors`` + ``<stem>.json``.

    The tensors go to the safetensors file, the structure and the plain values to the JSON file (see
    `split_tree`); neither is a pickle. The files are written in place: callers write into a temporary folder
    that they rename when complete.

    Args:
        obj: the tree, e.g. an optimizer's ``state_dict()``.
        stem: the path without suffix; ``.safetensors`` / ``.json`` are appended to its name.

    Raises:
        TypeError: ``obj`` holds something JSON cannot store (see `split_tree`).
    """
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    skeleton = split_tree(obj, tensors)
    tensor_file, json_file = _files(stem)
    save_file(tensors, str(tensor_file))
    json_file.write_text(json.dumps(skeleton), encoding="utf-8")


def load_tree(stem: Path) -> Any:  # noqa: ANN401 - what save_tree saved
    """Load what `save_tree` wrote (safetensors + JSON; nothing is unpickled).

    Args:
        stem: the path given to `save_tree`.

    Returns:
        The tree.

    Raises:
        OSError: a file is missing or unreadable.
        safetensors.SafetensorError: the tensor file is damaged (e.g. truncated).
        ValueError: the JSON file is not valid JSON (``json.JSONDecodeError``) or not a tree `split_tree` wrote.
        KeyError: the JSON names a tensor the tensor file lacks.
    """
    from safetensors.torch import load_file

    tensor_file, json_file = _files(stem)
    tensors = load_file(str(tensor_file))
    return join_tree(json.loads(json_file.read_text(encoding="utf-8")), tensors)


def rng_state() -> dict[str, Any]:
    """Every RNG a training step draws from (torch CPU and CUDA, numpy, Python), as a tree for `save_tree`."""
    import numpy as np
    import torch

    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()  # one per visible GPU
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned.

    The GPU states are restored where there are GPUs to take them: a state saved where more GPUs were visible
    (an 8-GPU node, resumed with ``CUDA_VISIBLE_DEVICES=0`` or on a smaller machine) restores the GPUs this
    process sees and warns that dropout on the GPU then differs from an uninterrupted run; it is not an error.
    """
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = list(state.get("cuda") or [])
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index, gpu_state in enumerate(saved[:visible]):
        torch.cuda.set_rng_state(gpu_state, index)
    if saved and len(saved) != visible:
        logger.warning("the checkpoint holds the RNG states of %d GPU(s), this process sees %d: %s; dropout on "
                       "the GPU differs from an uninterrupted run", len(saved), visible,
                       f"the first {min(len(saved), visible)} restored" if visible else "none restored")
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])
