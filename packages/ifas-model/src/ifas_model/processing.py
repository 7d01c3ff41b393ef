"""The I-FAS processor: CLIP image transform + tokenizer + the prompt template and the answer segments.

Template (one sequence per image; the visual tokens are NOT in `input_ids`, the model prepends them)::

    [M + L visual tokens]  </s>Question: Is this photo of a real person? Answer:  Yes. This is a man ...</s>
    \\__ model, not ids __/  \\________________ prompt (labels -100) ______/ \\_1_/\\______ 2 ________/

* BOS: OPT's tokenizer starts every sequence with ``</s>``; the processor makes sure of it.
* The answer is ``" " + scf.schema.compose_answer(judgment, interpretation)``: the judgment is the single
  BPE token ``" Yes"`` or ``" No"`` **with its leading space** (OPT's GPT-2 BPE gives "Yes" and " Yes"
  different ids). `answer_segments` marks it 1. The rest of the answer (``". This is <caption>"``)
  and the closing EOS are segment 2, the interpretation.
* A judgment-only answer (empty interpretation, the paper's "without SCF" ablation) is the judgment token
  alone, with no EOS, so its loss is the judgment loss only (a judgment-only model is a scorer; what it
  generates after the judgment is not trained).
* Training calls (judgments given) pad on the right; prompt-only calls (scoring, generation) pad on the
  left, so the answer position is the last column.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scf.schema import ANSWER_SEPARATOR, JUDGMENT_FAKE, JUDGMENT_REAL, QUESTION

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image
    from transformers import BatchFeature, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

PROMPT_TEMPLATE = "Question: {question} Answer:"
"""BLIP-2's VQA prompt for OPT (LAVIS), filled with the paper's single question."""
PROCESSOR_CONFIG_NAME = "ifas_processor_config.json"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_MAX_LENGTH = 128
"""Text tokens per sample (prompt + answer); interpretations are cut to fit, keeping the EOS."""


def _image_processor_class() -> type:
    """`CLIPImageProcessorPil` where it exists (no torchvision needed, no fallback warning), else the classic one."""
    try:
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil
    except ImportError:  # older transformers
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor


def build_image_processor(image_size: int = 224) -> Any:
    """The CLIP transform from config values, no download: resize shortest edge, center crop, CLIP mean/std.

    Args:
        image_size: side of the square crop (the vision tower's `image_size`; 224 for ViT-L/14).
    """
    return _image_processor_class()(
        do_resize=True,
        size={"shortest_edge": image_size},
        do_center_crop=True,
        crop_size={"height": image_size, "width": image_size},
        do_rescale=True,
        do_normalize=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )


def rgb_images(images: Sequence[Image.Image]) -> list[Image.Image]:
    """PIL images as 8-bit RGB PIL images, by `scf.imaging.to_rgb`: the conversion of ``judge`` and ``scf ingest``.

    EXIF orientation is applied, alpha is composited over white, 16-bit (``I;16``) and 32-bit integer (``I``)
    grayscale are scaled by their bit depth (Pillow's ``convert("RGB")`` clips them to white). An ``RGB`` image
    without EXIF orientation keeps its pixels exactly.

    Args:
        images: PIL images of any common mode.

    Raises:
        TypeError: an item is not a PIL image (arrays and tensors: wrap them with ``PIL.Image.fromarray``).
        scf.imaging.ImageModeError: (a ``ValueError``) ``images[i]`` has a mode with no RGB meaning (``F``
            floats, unknown modes); the message names the index and the mode.
    """
    from PIL import Image

    from scf.imaging import ImageModeError, to_rgb

    out = []
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            kind = type(image)
            raise TypeError(f"images[{i}] is a {kind.__module__}.{kind.__qualname__}, not a PIL image; "
                            "pass PIL images (e.g. PIL.Image.fromarray(array) for a uint8 HxWx3 array)")
        try:
            out.append(Image.fromarray(to_rgb(image)))  # (H, W, 3) uint8: mode RGB
        except ImageModeError as e:
            raise ImageModeError(f"images[{i}]: {e}") from e
    return out


def judgment_token_ids_for(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Ids of " Yes" / " No" (leading space) in `tokenizer`; each must be exactly one token.

    Raises:
        ValueError: a judgment word is not one token in this tokenizer.
    """
    ids = {}
    for word in (JUDGMENT_REAL, JUDGMENT_FAKE):
        pieces = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            raise ValueError(
                f"the tokenizer splits the judgment {' ' + word!r} into {len(pieces)} tokens {pieces}; I-FAS needs "
                "it to be one token (OPT's BPE has ' Yes' and ' No' as single tokens)"
            )
        ids[word] = int(pieces[0])
    return ids


class IFASProcessor:
    """Turns face images (and, for training, judgments and interpretations) into model inputs.

    Args:
        image_processor: a CLIP image processor (see `build_image_processor`).
        tokenizer: the LLM's tokenizer (OPT's GPT-2 BPE or the tiny preset's).
        prompt_template: the prompt, with ``{question}``; see `PROMPT_TEMPLATE`.
        question: the instruction; the paper's single question by default.
        max_length: maximum text tokens per sample (prompt + answer).
    """

    def __init__(
        self,
        image_processor: Any,
        tokenizer: PreTrainedTokenizerBase,
        prompt_template: str = PROMPT_TEMPLATE,
        question: str = QUESTION,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        if "{question}" not in prompt_template:
            raise ValueError(f"prompt_template must contain '{{question}}', got {prompt_template!r}")
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.prompt_template = prompt_template
        self.question = question
        self.max_length = int(max_length)
        self._judgment_ids = judgment_token_ids_for(tokenizer)
        self.eos_token_id = tokenizer.eos_token_id
        if self.eos_token_id is None:
            raise ValueError("the tokenizer has no eos_token; the interpretation must end with one")
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_id
        ids = tokenizer(self.prompt, add_special_tokens=True)["input_ids"]
        bos = tokenizer.bos_token_id
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]  # OPT conditions every sequence on </s> as BOS
        self.prompt_ids: list[int] = list(ids)
        if len(self.prompt_ids) + 1 > self.max_length:
            raise ValueError(f"max_length {self.max_length} leaves no room for the answer after the prompt")

    # --- properties -----------------------------------------------------------------------------------
    @property
    def prompt(self) -> str:
        """The prompt text after the visual tokens."""
        return self.prompt_template.format(question=self.question)

    @property
    def judgment_token_ids(self) -> dict[str, int]:
        """{"Yes": id of " Yes", "No": id of " No"}: the ids the loss trains and `score` reads."""
        return dict(self._judgment_ids)

    # --- building batches -----------------------------------------------------------------------------
    def _answer_ids(self, judgment: str, interpretation: str, index: int) -> tuple[list[int], list[int]]:
        """Token ids of the judgment (one token) and of the interpretation (incl. EOS; empty if none)."""
        if judgment not in self._judgment_ids:
            raise ValueError(
                f"judgments[{index}] must be {JUDGMENT_REAL!r} or {JUDGMENT_FAKE!r}, got {judgment!r}"
            )
        judgment_ids = [self._judgment_ids[judgment]]
        if not interpretation:
            return judgment_ids, []
        rest = self.tokenizer(ANSWER_SEPARATOR + interpretation, add_special_tokens=False)["input_ids"]
        room = self.max_length - len(self.prompt_ids) - 1 - 1  # judgment and EOS
        return judgment_ids, [*rest[: max(room, 0)], self.eos_token_id]

    def __call__(
        self,
        images: Sequence[Image.Image],
        judgments: Sequence[str] | None = None,
        interpretations: Sequence[str] | None = None,
        return_tensors: str = "pt",
    ) -> BatchFeature:
        """Build a batch.

        Args:
            images: PIL images, converted to RGB by `scf.imaging.to_rgb` as ``judge`` and ``scf ingest`` do
                (see `rgb_images`).
            judgments: "Yes" (real) / "No" (fake) per image, for training; None for scoring/generation.
            interpretations: "This is <caption>" per image, or "" / None for judgment-only answers.
            return_tensors: "pt" (default) or "np".

        Raises:
            TypeError: an item of ``images`` is not a PIL image.
            scf.imaging.ImageModeError: (a ``ValueError``) an image mode with no RGB meaning (``F``), named.

        Returns:
            `BatchFeature` with `pixel_values` (B, 3, H, W), `input_ids` (B, T), `attention_mask` (B, T), and,
            when judgments are given, `labels` (B, T; -100 on prompt and padding) and `answer_segments`
            (B, T; 0 none, 1 judgment, 2 interpretation incl. EOS). Training batches are right-padded,
            prompt-only batches left-padded.
        """
        from transformers import BatchFeature

        images = list(images)
        if not images:
            raise ValueError("images is empty")
        if judgments is not None and len(judgments) != len(images):
            raise ValueError(f"got {len(images)} images but {len(judgments)} judgments")
        if interpretations is not None:
            if judgments is None:
                raise ValueError("interpretations need judgments (the answer starts with the judgment)")
            if len(interpretations) != len(images):
                raise ValueError(f"got {len(images)} images but {len(interpretations)} interpretations")
        pixel_values = self.image_processor(images=rgb_images(images), return_tensors="np")["pixel_values"]

        if judgments is None:
            rows = [list(self.prompt_ids) for _ in images]
            width = max(len(r) for r in rows)
            input_ids = [[self.pad_token_id] * (width - len(r)) + r for r in rows]  # left padding
            attention = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
            data: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention}
        else:
            rows, labels, segments = [], [], []
            for i, judgment in enumerate(judgments):
                interp = (interpretations[i] if interpretations is not None else "") or ""
                j_ids, i_ids = self._answer_ids(judgment, interp, i)
                rows.append(self.prompt_ids + j_ids + i_ids)
                labels.append([-100] * len(self.prompt_ids) + j_ids + i_ids)
                segments.append([0] * len(self.prompt_ids) + [1] * len(j_ids) + [2] * len(i_ids))
            width = max(len(r) for r in rows)
            pad = [width - len(r) for r in rows]  # right padding
            data = {
                "input_ids": [r + [self.pad_token_id] * p for r, p in zip(rows, pad, strict=True)],
                "attention_mask": [[1] * len(r) + [0] * p for r, p in zip(rows, pad, strict=True)],
                "labels": [r + [-100] * p for r, p in zip(labels, pad, strict=True)],
                "answer_segments": [r + [0] * p for r, p in zip(segments, pad, strict=True)],
            }
        data["pixel_values"] = pixel_values
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        return BatchFeature(data=data, tensor_type=return_tensors)

    def prompt_inputs(self, batch_size: int) -> dict[str, Any]:
        """The prompt-only ``input_ids`` and ``attention_mask`` of ``batch_size`` images, without the images.

        Every row is the fixed prompt (`prompt_ids`), so no padding: the same int64 tensors as
        ``self(images, judgments=None)["input_ids"]`` / ``["attention_mask"]``, with no image processed. The
        trainer's evaluation batches pair them with the training call's ``pixel_values`` (same images).

        Raises:
            ValueError: ``batch_size`` < 1.
        """
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ids = torch.tensor([self.prompt_ids] * batch_size, dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    # --- decoding -------------------------------------------------------------------------------------
    def decode_answer(self, token_ids: Sequence[int]) -> tuple[str, str]:
        """Split generated answer ids into (judgment, explanation).

        The judgment is "Yes" / "No" when the first token is the judgment token, else the first token's text;
        the explanation is the text after it with the separator (". ") and special tokens removed.
        """
        ids = [int(t) for t in token_ids]
        if not ids:
            return "", ""
        by_id = {v: k for k, v in self._judgment_ids.items()}
        first = ids[0]
        judgment = by_id.get(first) or self.tokenizer.decode([first], skip_special_tokens=True).strip()
        explanation = self.tokenizer.decode(ids[1:], skip_special_tokens=True).strip()
        separator = ANSWER_SEPARATOR.strip()
        if explanation.startswith(separator):
            explanation = explanation[len(separator):].strip()
        return judgment, explanation

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = True) -> list[str]:
        """The tokenizer's `batch_decode`."""
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens)

    # --- persistence ----------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write the image processor, the tokenizer and `ifas_processor_config.json` to a folder."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        self.image_processor.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        settings = {
            "processor_class": type(self).__name__,
            "prompt_template": self.prompt_template,
            "question": self.question,
            "max_length": self.max_length,
            "judgment_token_ids": self.judgment_token_ids,
        }
        (path / PROCESSOR_CONFIG_NAME).write_text(json.dumps(settings, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, pretrained: str | os.PathLike, **kwargs: Any) -> IFASProcessor:
        """Load a processor saved by `save_pretrained` (a local folder or a Hub id).

        Nothing shipped with the checkpoint is ever run: a folder with an ``auto_map`` (config.json,
        tokenizer_config.json, preprocessor_config.json) or ``*.py`` files is refused, and the tokenizer and image
        processor load with ``trust_remote_code=False`` (a Hub repository asking for its code is refused too).

        Raises:
            FileNotFoundError: ``checkpoint folder not found: PATH`` for a local-looking path that does not exist.
            ValueError: the folder has no `ifas_processor_config.json` (not an I-FAS processor).
            RemoteCodeRefused: the checkpoint asks for its own Python code (an OSError and a ValueError).
            OSError: the processor cannot be read (``processor 'ID': ...``).
        """
        from transformers import AutoTokenizer

        from . import configuration  # noqa: F401 - registers "ifas" with AutoConfig, which AutoTokenizer reads
        from ._loading import check_local, loading, no_remote_code, refuse_remote_code

        check_local(pretrained, "checkpoint folder")
        kwargs = no_remote_code(kwargs)
        refuse_remote_code(pretrained, "checkpoint")
        settings = _read_processor_config(pretrained, **kwargs)
        _check_tokenizer_files(pretrained)
        with loading("processor", pretrained):
            image_processor = _image_processor_class().from_pretrained(pretrained, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(pretrained, **kwargs)
        processor = cls(
            image_processor,
            tokenizer,
            prompt_template=settings.get("prompt_template", PROMPT_TEMPLATE),
            question=settings.get("question", QUESTION),
            max_length=settings.get("max_length", DEFAULT_MAX_LENGTH),
        )
        saved = settings.get("judgment_token_ids")
        if saved and saved != processor.judgment_token_ids:
            raise ValueError(
                f"{pretrained}: the tokenizer gives judgment ids {processor.judgment_token_ids}, but the processor "
                f"was saved with {saved}"
            )
        return processor

    @classmethod
    def from_pretrained_parts(
        cls,
        vision: str | os.PathLike = "openai/clip-vit-large-patch14",
        text: str | os.PathLike = "facebook/opt-2.7b",
        **kwargs: Any,
    ) -> IFASProcessor:
        """The processor for `IFASForConditionalGeneration.from_pretrained_parts` with the same parts.

        The image transform is built from the vision config's `image_size` and CLIP's mean/std (only the
        config is read from `vision`); the tokenizer is loaded from `text`. `kwargs` go to `IFASProcessor`.

        Raises:
            FileNotFoundError, OSError, RemoteCodeRefused: as `IFASForConditionalGeneration.from_pretrained_parts`
                (part named).
        """
        from transformers import AutoTokenizer, CLIPVisionConfig

        from ._loading import check_local, loading, refuse_remote_code

        check_local(vision, "vision model folder")
        check_local(text, "language model folder")
        refuse_remote_code(vision, "vision model")
        refuse_remote_code(text, "language model")
        with loading("vision model", vision):
            image_size = CLIPVisionConfig.from_pretrained(vision, trust_remote_code=False).image_size
        with loading("tokenizer", text):
            tokenizer = AutoTokenizer.from_pretrained(text, trust_remote_code=False)
        return cls(build_image_processor(image_size), tokenizer, **kwargs)


def _check_tokenizer_files(pretrained: str | os.PathLike) -> None:
    """Refuse a local checkpoint folder without the tokenizer's files, naming them (transformers would say
    "the tokenizer has no eos_token" or ask for sentencepiece/tiktoken instead)."""
    folder = Path(pretrained)
    if not folder.is_dir():
        return  # a Hub id: transformers names what it cannot download
    have = {p.name for p in folder.iterdir()}
    missing = [] if "tokenizer_config.json" in have else ["tokenizer_config.json"]
    if "tokenizer.json" not in have and not {"vocab.json", "merges.txt"} <= have:
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    if missing:
        raise FileNotFoundError(f"{folder}: no {' and no '.join(missing)}: the checkpoint's tokenizer is incomplete "
                                "(IFASProcessor.save_pretrained writes these files; copy them from the run's final/ "
                                "folder)")


def _read_processor_config(pretrained: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
    """Read `ifas_processor_config.json` from a folder or a Hub repo."""
    local = Path(pretrained) / PROCESSOR_CONFIG_NAME
    if local.is_file():
        return json.loads(local.read_text())
    if Path(pretrained).is_dir():
        raise ValueError(f"{pretrained} has no {PROCESSOR_CONFIG_NAME}: it is not a saved I-FAS processor")
    from huggingface_hub import hf_hub_download

    from ._loading import loading

    hub = {k: kwargs[k] for k in ("revision", "token", "cache_dir") if k in kwargs}
    with loading("processor", pretrained):
        return json.loads(Path(hf_hub_download(str(pretrained), PROCESSOR_CONFIG_NAME, **hub)).read_text())
