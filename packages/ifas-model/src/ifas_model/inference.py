"""Batched inference: P(real) for many images (`score_images`) and judgment + explanation (`explain_images`).

Both run under `torch.inference_mode`, on the model's device, with pixel values cast to the vision tower's
dtype by the model. Scores are P(real) = P(" Yes") at the answer position (see
`IFASForConditionalGeneration.score`); `explain_images` reports `score`'s probability too, so its `p_real`
equals `score_images` for the same images.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .modeling import IFASForConditionalGeneration
    from .processing import IFASProcessor

logger = logging.getLogger(__name__)


def _batches(n: int, size: int) -> list[tuple[int, int]]:
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def image_list(images: Any, function: str) -> list[Image.Image]:
    """``images`` as a list of PIL images, or a ``TypeError`` naming the argument, the item and what to pass.

    Only PIL images are accepted (any common mode; the processor converts them with `scf.imaging.to_rgb`):
    a path or an array is refused rather than opened, because these functions score the image as given, and a
    photo that is not a face crop gets a meaningless score (``ifas-predict`` detects and crops the face first).
    """
    from PIL import Image

    hint = ("pass PIL images of face crops, e.g. [PIL.Image.open(path)] or [PIL.Image.fromarray(array)]; "
            "for whole photos or videos use ifas-predict, which detects and crops the face")
    if isinstance(images, Image.Image):
        raise TypeError(f"{function}: images must be a list of PIL images, got one image; wrap it in a list "
                        "([image])")
    if isinstance(images, str | bytes) or not isinstance(images, Iterable):
        raise TypeError(f"{function}: images must be a list of PIL images, got {type(images).__name__}; {hint}")
    images = list(images)
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            kind = type(image)
            name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
            raise TypeError(f"{function}: images[{i}] is a {name}, not a PIL image; {hint}")
    return images


def _prompt_batches(model: IFASForConditionalGeneration, processor: IFASProcessor, images: list[Image.Image],
                    batch_size: int, description: str, progress: bool) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """``(start, stop, prompt-only inputs on the model's device)`` per batch, with a rich progress bar (advanced
    after each batch is used) when ``progress``."""
    spans = _batches(len(images), batch_size)
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        bar.start()
        task = bar.add_task(description, total=len(images))
    device = model.get_input_embeddings().weight.device
    try:
        for start, stop in spans:
            batch = processor(images[start:stop])  # left-padded prompts, no answers
            yield start, stop, {k: v.to(device) for k, v in batch.items()}
            if bar is not None:
                bar.advance(task, stop - start)
    finally:
        if bar is not None:
            bar.stop()


def score_images(
    model: IFASForConditionalGeneration,
    processor: IFASProcessor,
    images: Sequence[Image.Image],
    batch_size: int = 32,
    normalize: str = "vocab",
    progress: bool = False,
) -> np.ndarray:
    """P(real) of each image, one forward pass per batch.

    Args:
        model: an I-FAS model (put in eval mode here).
        processor: its processor.
        images: a list of PIL images of face crops, converted to RGB as ``judge`` does (`scf.imaging.to_rgb`:
            alpha over white, 16-bit scaled); paths and arrays raise ``TypeError``.
        batch_size: images per forward pass.
        normalize: "vocab" (P(" Yes") over the vocabulary, default) or "yes_no" (two-way renormalised).
        progress: show a rich progress bar.

    Returns:
        float32 array (N,) of P(real), in the order of `images`.

    Raises:
        TypeError: ``images`` is not a list of PIL images (a path, an array, a single image).
        scf.imaging.ImageModeError: (a ``ValueError``) an image mode with no RGB meaning (``F``), named.
    """
    import torch

    images = image_list(images, "score_images")
    model.eval()
    out = np.empty(len(images), dtype=np.float32)
    with torch.inference_mode():
        for start, stop, inputs in _prompt_batches(model, processor, images, batch_size, "scoring", progress):
            out[start:stop] = model.score(**inputs, normalize=normalize).float().cpu().numpy()
    return out


def explain_images(
    model: IFASForConditionalGeneration,
    processor: IFASProcessor,
    images: Sequence[Image.Image],
    max_new_tokens: int = 40,
    batch_size: int = 16,
    normalize: str = "vocab",
    progress: bool = False,
    **generate_kwargs: Any,
) -> list[dict[str, Any]]:
    """Judgment, explanation and P(real) of each image (greedy decoding unless `generate_kwargs` say otherwise).

    Args:
        model: an I-FAS model (put in eval mode here).
        processor: its processor.
        images: a list of PIL images of face crops, converted to RGB as ``judge`` does (`scf.imaging.to_rgb`:
            alpha over white, 16-bit scaled); paths and arrays raise ``TypeError``.
        max_new_tokens: generation budget of the answer (judgment + interpretation).
        batch_size: images per `generate` call.
        normalize: how `p_real` is read from the answer-position logits ("vocab" or "yes_no").
        progress: show a rich progress bar.
        **generate_kwargs: passed to `model.generate` (e.g. ``num_beams``).

    Returns:
        One dict per image: ``p_real`` (float, P(real) at the answer position), ``judgment`` ("Yes" / "No", or
        the first generated token's text if the model answered otherwise), ``explanation`` (the text after the
        judgment, e.g. "This is a man ...", "" if none).

    Raises:
        TypeError: ``images`` is not a list of PIL images (a path, an array, a single image).
        scf.imaging.ImageModeError: (a ``ValueError``) an image mode with no RGB meaning (``F``), named.
        ValueError: an unknown ``normalize``.
    """
    import torch

    from .modeling import SCORE_NORMALIZATIONS

    if normalize not in SCORE_NORMALIZATIONS:  # checked before any generation
        raise ValueError(f"normalize must be one of {', '.join(SCORE_NORMALIZATIONS)}, got {normalize!r}")
    images = image_list(images, "explain_images")
    model.eval()
    results: list[dict[str, Any]] = []
    with torch.inference_mode():
        for _, _, inputs in _prompt_batches(model, processor, images, batch_size, "explaining", progress):
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, **generate_kwargs)
            sequences = out.sequences if hasattr(out, "sequences") else out
            # P(real) from `score`, the pass ifas-eval scores with: the same number for the same image in
            # every tool, whatever the dtype (generate's own first-step logits are in the model's dtype).
            p_real = model.score(**inputs, normalize=normalize)  # (B,)
            for ids, p in zip(sequences.tolist(), p_real.cpu().tolist(), strict=True):
                judgment, explanation = processor.decode_answer(ids)
                results.append({"p_real": float(p), "judgment": judgment, "explanation": explanation})
    return results
