"""BLIP-2 captioners of SCF: the general captioner C_G and, once fine-tuned, the spoof-aware captioner C_S.

Both are `transformers.Blip2ForConditionalGeneration` with its `Blip2Processor`, loaded from a Hub id or a
local folder (``Salesforce/blip2-opt-2.7b`` by default: BLIP-2, Li et al. 2023, the general captioner the
paper cites in its SCF section) or built tiny and random from config
(``tiny`` preset, offline). Generation is batched under `torch.inference_mode` through
`generate_caption_ids`, whose default (fast) path decodes greedily with a static KV cache: on CUDA,
transformers then compiles the decoding step (CUDA graphs), and `Blip2Captioner` pads a short last batch to
the batch size so the compiled step is reused. Its greedy tokens are those of plain ``generate``
(``fast=False``, the dynamic cache); tests check this on CPU, and ``tools/benchmark.py`` measures both.

Decoding choices (the paper is silent; ours, after LAVIS ``caption_coco_ft``): prompt ``"a photo of"``,
at most 30 and at least 8 new tokens, greedy (one beam) unless ``num_beams`` says otherwise. The caption
is the continuation of the prompt only (the prompt text is not part of it), whitespace-normalised.
Generation stops on the model's own end token (`generation_end_id`: ``"\n"`` for BLIP-2-OPT, which LAVIS
trained with ``"\n"`` after every caption) and, as a guard, on the tokenizer's ``eos_token`` (``</s>``); the
trailing ``"\n"`` is dropped from the caption.
Trailing whitespace of the prompt is dropped before tokenising: OPT's byte-level BPE merges a space with
the word after it, so the first caption token must carry its own leading space, in generation and in
fine-tuning alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from scf.presets import CAPTIONER_PRESETS

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

logger = logging.getLogger(__name__)

TINY = "tiny"
"""Captioner source name of the tiny random BLIP-2 preset."""
BLIP2_MODEL_TYPE = "blip-2"


class CaptionerError(ValueError):
    """The captioner cannot be used: not BLIP-2, not found, or an unsupported option."""


@dataclass(frozen=True)
class DecodingConfig:
    """How captions are decoded; recorded with every output (dataset card, ``scf_caption_config.json``)."""

    prompt: str = "a photo of"
    """Text the language model continues; also the fine-tuning prompt of C_S (LAVIS: "a photo of ")."""
    max_new_tokens: int = 30
    """LAVIS caption_coco_ft ``max_len``."""
    min_new_tokens: int = 8
    """LAVIS caption_coco_ft ``min_len``."""
    num_beams: int = 1
    """1 = greedy (our default, deterministic and fastest); LAVIS evaluates with 5."""
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(f"min_new_tokens must be in [0, max_new_tokens], got {self.min_new_tokens}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")

    @property
    def prompt_text(self) -> str:
        """The prompt as tokenised (trailing whitespace dropped)."""
        return self.prompt.rstrip()

    def generate_kwargs(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
            "num_beams": self.num_beams,
            "do_sample": False,
            "repetition_penalty": self.repetition_penalty,
        }


class Captioner(Protocol):
    """Anything that turns images into captions (a BLIP-2 captioner, or a stand-in in tests)."""

    name: str

    def caption(self, images: Sequence[Image.Image]) -> list[str]: ...


def clean_caption(text: str) -> str:
    """Drop non-printable characters and collapse whitespace."""
    return " ".join("".join(ch for ch in text if ch.isprintable() or ch.isspace()).split())


def resolve_source(preset: str, captioner: str | None) -> str:
    """The captioner source: an explicit id/path wins over the preset; the ``tiny`` preset gives ``tiny``.

    Raises:
        CaptionerError: an unknown preset.
    """
    if captioner:
        return captioner
    if preset not in CAPTIONER_PRESETS:
        raise CaptionerError(f"unknown captioner preset {preset!r}; choose one of {', '.join(CAPTIONER_PRESETS)}")
    return CAPTIONER_PRESETS[preset].checkpoint or TINY


def _config_dict(source: str) -> dict[str, Any]:
    """The raw ``config.json`` of a captioner: read directly from a local folder, else fetched from the Hub.

    Reading the JSON (not `AutoConfig`) lets a folder of another architecture, one transformers does not
    know (an I-FAS checkpoint, ``model_type`` ``ifas``), be named by its ``model_type``.
    """
    import json
    from pathlib import Path

    path = Path(source).expanduser()
    # a Hub id is "name" or "org/name": more slashes, or an absolute / ./ / ~ path, can only mean a folder
    looks_local = path.is_absolute() or source.startswith((".", "~")) or source.count("/") > 1 or path.exists()
    if looks_local:
        if not path.is_dir():
            raise CaptionerError(f"captioner folder not found: {source}")
        file = path / "config.json"
        if not file.is_file():
            raise CaptionerError(f"captioner folder {source} has no config.json; SCF needs a BLIP-2 checkpoint "
                                 "folder (save_pretrained output)")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CaptionerError(f"{file}: not a readable JSON config ({e})") from e
        if not isinstance(data, dict):
            raise CaptionerError(f"{file}: not a model config (a JSON object is expected)")
        return data
    from transformers import PretrainedConfig

    try:
        return PretrainedConfig.get_config_dict(source)[0]
    except (OSError, ValueError) as e:
        raise CaptionerError(f"cannot read the config of captioner {source!r}: {str(e).splitlines()[0]}") from e


def check_blip2(source: str) -> None:
    """Check that ``source`` is a BLIP-2 checkpoint by its config alone, before any weight is loaded.

    Raises:
        CaptionerError: the config cannot be read, or its ``model_type`` is not ``blip-2`` (the message names
            the ``model_type`` found), or the BLIP-2 uses an encoder-decoder (Flan-T5) language model.
    """
    if source == TINY:
        return
    data = _config_dict(source)
    model_type = data.get("model_type")
    if model_type != BLIP2_MODEL_TYPE:
        raise CaptionerError(
            f"captioner {source!r} is not BLIP-2: its config.json has model_type {model_type!r}; SCF needs a "
            f"BLIP-2 checkpoint (model_type 'blip-2', e.g. Salesforce/blip2-opt-2.7b)"
        )
    from transformers import Blip2Config

    try:  # what AutoConfig.from_pretrained would build, from the dict already read (no second read or fetch)
        config = Blip2Config.from_dict(data)
    except (OSError, ValueError) as e:
        raise CaptionerError(f"cannot read the config of captioner {source!r}: {str(e).splitlines()[0]}") from e
    if not getattr(config, "use_decoder_only_language_model", True):
        raise CaptionerError(f"captioner {source!r} uses an encoder-decoder language model (Flan-T5); SCF "
                             "supports the decoder-only (OPT) BLIP-2 checkpoints")


AUTO_DEVICE = "auto"
"""``--device auto``: the same as leaving ``--device`` out (see `pick_device`)."""

DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32", "bf16", "fp16", "fp32")
"""The ``--dtype`` spellings of ``scf caption``: those of ``ifas-eval``, ``ifas-predict`` and ``ifas-demo``."""
DTYPE_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
"""Long dtype names and the short names SCF records (``scf_caption_config.json`` keeps ``bf16``, ``fp16``, ``fp32``)."""


def canonical_dtype(dtype: str) -> str:
    """A ``--dtype`` value in the short form SCF records: ``bfloat16`` -> ``bf16``, ``float16`` -> ``fp16``,
    ``float32`` -> ``fp32``; ``auto`` and the short names unchanged.

    Raises:
        CaptionerError: not one of `DTYPE_CHOICES` (one line listing them).
    """
    if dtype not in DTYPE_CHOICES:
        raise CaptionerError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got {dtype!r}")
    return DTYPE_ALIASES.get(dtype, dtype)


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def check_device(device: str | None) -> None:
    """Check a ``--device`` string before anything is loaded: a torch device that exists on this machine.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; None and ``auto`` (automatic, see
            `pick_device`) are always valid.

    Raises:
        CaptionerError: not a device string, a device type SCF does not run on, or a CUDA/MPS device that this
            machine does not have (one line, naming the value given).
    """
    if device is None or device == AUTO_DEVICE:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise CaptionerError(f"--device {device}: not a torch device (use auto, cpu, cuda, cuda:N or mps)") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CaptionerError(f"--device {device}: no CUDA GPU is available (use cpu or auto)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise CaptionerError(f"--device {device}: this machine has {count} CUDA GPU(s) (cuda:0 to "
                                 f"cuda:{count - 1})")
    elif dev.type == "mps":
        if not _mps_available():
            raise CaptionerError(f"--device {device}: MPS (Apple GPU) is not available (use cpu or auto)")
    elif dev.type != "cpu":
        raise CaptionerError(f"--device {device}: SCF runs on cpu, cuda or mps, not {dev.type!r}")


GPU_BATCH_SIZE = 256
"""Default images per generate call on a GPU: the batch `tools/benchmark.py` measures the fast path at."""
CPU_BATCH_SIZE = 32
"""Default images per generate call on CPU."""


def default_batch_size(device: str | None = None) -> int:
    """`GPU_BATCH_SIZE` when ``device`` (None = automatic, see `pick_device`) is a CUDA device, else
    `CPU_BATCH_SIZE`. Checks ``device`` like `pick_device`."""
    return GPU_BATCH_SIZE if pick_device(device).type == "cuda" else CPU_BATCH_SIZE


def pick_device(device: str | None = None) -> torch.device:
    """The device to run on: the given one; for None or ``auto``, ``cuda:LOCAL_RANK`` when CUDA is available
    (each process of a torchrun / accelerate launch on its own GPU), else Apple's MPS when available (an
    Apple-silicon Mac), else CPU: ``auto`` of ``ifas-eval``, ``ifas-predict`` and ``ifas-demo``, which pick the
    same devices. MPS is supported by reading (standard torch operations, float32 by default, see `pick_dtype`),
    not tested on a Mac.

    Raises:
        CaptionerError: the given device is not valid here (see `check_device`).
    """
    import os

    import torch

    if device and device != AUTO_DEVICE:
        check_device(device)
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on a CUDA GPU that has it, else fp16 on CUDA; fp32 on CPU and MPS (as ``ifas-eval``:
    bf16 needs macOS 14 on MPS). Or one of `DTYPE_CHOICES`: ``bf16``/``bfloat16``, ``fp16``/``float16``,
    ``fp32``/``float32``.

    Raises:
        CaptionerError: not one of `DTYPE_CHOICES`.
    """
    import torch

    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    dtype = canonical_dtype(dtype)
    if dtype in table:
        return table[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_blip2(source: str, *, dtype: str = "auto", device: str | None = None, load_in_8bit: bool = False,
               seed: int = 0) -> tuple[Blip2ForConditionalGeneration, Blip2Processor]:
    """Load (or, for ``tiny``, build) a BLIP-2 model and processor, checked to be BLIP-2 first.

    Args:
        source: Hub id, local folder, or ``tiny``.
        dtype: one of `DTYPE_CHOICES` (see `pick_dtype`).
        device: torch device string or ``auto``; default (None, ``auto``) `pick_device`.
        load_in_8bit: quantise the weights to 8 bits with bitsandbytes (``BitsAndBytesConfig(load_in_8bit=True)``).
        seed: seed of the tiny preset's random weights.

    Raises:
        CaptionerError: not BLIP-2, unreadable, or 8-bit asked of the tiny preset.
    """
    check_blip2(source)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    logger.debug("loading captioner %s on %s in %s (--device %s, --dtype %s)", source, dev,
                 str(torch_dtype).removeprefix("torch."), device or AUTO_DEVICE, dtype)
    if source == TINY:
        if load_in_8bit:
            raise CaptionerError("8-bit loading needs a real checkpoint; the tiny preset is built in fp32")
        from scf.presets import build_tiny_captioner

        model, processor = build_tiny_captioner(seed=seed)
        model = model.to(dev, torch_dtype)
    else:
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        # safetensors only: a captioner folder given by a user is never unpickled
        kwargs: dict[str, Any] = {"dtype": torch_dtype, "use_safetensors": True}
        if load_in_8bit:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
            kwargs["device_map"] = {"": dev.index or 0} if dev.type == "cuda" else {"": "cpu"}
        # backend="pil": the PIL image processor, with or without torchvision (no fallback warning, the same
        # pixels on every install)
        processor = Blip2Processor.from_pretrained(source, backend="pil")
        model = Blip2ForConditionalGeneration.from_pretrained(source, **kwargs)
        if not load_in_8bit:
            model = model.to(dev)
    model.eval()
    return model, processor


def generation_end_id(model: Any, tokenizer: Any = None) -> int:
    """The token id the model's ``generate`` stops on, which C_S fine-tuning appends to every caption.

    ``model.generation_config.eos_token_id`` (the first one if it is a list), else
    ``model.config.text_config.eos_token_id``, else ``tokenizer.eos_token_id``. For ``Salesforce/blip2-opt-2.7b``
    this is 50118, ``"\n"``, not the tokenizer's ``</s>`` (2): LAVIS trained the BLIP-2-OPT checkpoints with
    ``"\n"`` appended to every caption (``lavis/models/blip2_models/blip2_opt.py``), and transformers'
    ``convert_blip_2_original_to_pytorch.py`` writes that id into ``text_config``.

    Raises:
        CaptionerError: no end token is declared anywhere.
    """
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(eos, (list, tuple)):
        eos = eos[0] if eos else None
    if eos is None:
        eos = getattr(getattr(getattr(model, "config", None), "text_config", None), "eos_token_id", None)
    if eos is None and tokenizer is not None:
        eos = tokenizer.eos_token_id
    if eos is None:
        raise CaptionerError("the captioner declares no end token (generation_config.eos_token_id, "
                             "text_config.eos_token_id and the tokenizer's eos_token_id are all unset)")
    return int(eos)


def caption_stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids captioning stops on: `generation_end_id` first, then the tokenizer's EOS as a guard (once)."""
    ids = [generation_end_id(model, tokenizer)]
    if tokenizer.eos_token_id is not None and int(tokenizer.eos_token_id) not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def generate_caption_ids(model: Blip2ForConditionalGeneration, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                         attention_mask: torch.Tensor, decoding: DecodingConfig, *, fast: bool = True,
                         stop_token_ids: Sequence[int] | None = None) -> torch.Tensor:
    """The new token ids of one batch, (B, new_tokens), decoded as ``decoding`` says.

    Args:
        model: a BLIP-2 model in eval mode.
        pixel_values: (B, 3, H, W) in the model's dtype, on its device.
        input_ids: (B, T) image tokens + prompt, as `Blip2Processor` makes them.
        attention_mask: (B, T).
        decoding: decoding settings.
        fast: True (default) = greedy/beam decoding with a static KV cache (``cache_implementation="static"``;
            on CUDA transformers compiles the step); False = plain ``generate`` with its dynamic cache (the
            reference path). Both give the same tokens up to floating-point reordering of the attention
            over the padded cache, which the tests check to be exact on CPU.
        stop_token_ids: ids that end a caption (`caption_stop_ids`); None = the model's generation config.

    Returns:
        The continuation of the prompt only.
    """
    kwargs = decoding.generate_kwargs()
    if fast:
        kwargs["cache_implementation"] = "static"
    if stop_token_ids is not None:
        kwargs["eos_token_id"] = [int(i) for i in stop_token_ids]
    generated = model.generate(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    return generated[:, input_ids.shape[1]:]  # generate returns prompt + continuation


class Blip2Captioner:
    """Batched captioning with a BLIP-2 model.

    Args:
        model: a `Blip2ForConditionalGeneration` (eval mode, on its device).
        processor: its `Blip2Processor`.
        name: the id or path recorded as the captioner in the corpus.
        decoding: decoding settings.
        batch_size: images per `generate` call (on a GPU, 128-512 keeps it busy; see docs/benchmarks.md).
        fast: decode with the static-cache path of `generate_caption_ids` (default); False = plain ``generate``.
    """

    def __init__(self, model: Blip2ForConditionalGeneration, processor: Blip2Processor, name: str,
                 decoding: DecodingConfig | None = None, batch_size: int = 32, fast: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.processor, self.name = model, processor, name
        self.decoding = decoding or DecodingConfig()
        self.batch_size = batch_size
        self.fast = fast
        self.stop_token_ids = caption_stop_ids(model, processor.tokenizer)
        self.processor.tokenizer.padding_side = "left"  # decoder-only generation continues at the right edge
        self._prompt_inputs: tuple[Any, Any] | None = None

    @classmethod
    def load(cls, source: str, *, decoding: DecodingConfig | None = None, batch_size: int = 32,
             dtype: str = "auto", device: str | None = None, load_in_8bit: bool = False,
             name: str | None = None) -> Blip2Captioner:
        """Load a captioner from a Hub id, local folder or ``tiny`` (see `load_blip2`)."""
        model, processor = load_blip2(source, dtype=dtype, device=device, load_in_8bit=load_in_8bit)
        return cls(model, processor, name or source, decoding, batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the pixels are sent in: the vision model's patch-embedding weight's.

        Not the first parameter's: that is ``query_tokens``, which ``from_pretrained(dtype=bf16)`` keeps in fp32
        (``_keep_in_fp32_modules``), so a bf16 model would be fed (and recorded as) fp32.
        """
        return self.model.vision_model.embeddings.patch_embedding.weight.dtype

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        """Captions of ``images`` (any size, RGB or not), in order, ``batch_size`` at a time."""
        out: list[str] = []
        for start in range(0, len(images), self.batch_size):
            out += self.generate_batch(images[start : start + self.batch_size])
        return out

    def generate_batch(self, images: Sequence[Image.Image]) -> list[str]:
        """Caption one batch: preprocess, `generate` under `torch.inference_mode`, decode the new tokens.

        All prompts of a batch are the same text, so no padding is needed; the images are resized to the
        processor's size, so a batch is one dense tensor. On CUDA with the fast path, a batch shorter than
        ``batch_size`` is padded with copies of its first image (their captions are dropped), so the compiled
        decoding step of full batches is reused instead of compiled again for a new shape.
        """
        return self.caption_prepared([self.prepare(images)])

    def prepare(self, images: Sequence[Image.Image]) -> Any:  # noqa: ANN401 - a pixel tensor
        """The CPU half of captioning: the pixels of ``images`` (RGB, resized, normalised), pinned on CUDA.

        Thread-safe (the image processor only; the fixed prompt is tokenised once), so `scf caption` runs it in
        its prefetch threads beside decoding while the GPU captions the previous batch. `caption_prepared` of
        the results gives the captions `caption` gives.
        """
        pixels = self.processor.image_processor([im.convert("RGB") for im in images], return_tensors="pt")
        pixel_values = pixels["pixel_values"]
        return pixel_values.pin_memory() if self.device.type == "cuda" else pixel_values

    def caption_prepared(self, parts: Sequence[Any]) -> list[str]:
        """Captions of the images whose pixels `prepare` returned (``parts``, in order), as one batch."""
        import torch

        parts = [p for p in parts if len(p)]
        if not parts:
            return []
        pixel_values = torch.cat([p.to(self.device, self.dtype, non_blocking=True) for p in parts])  # (B, 3, H, W)
        n = pixel_values.shape[0]
        if self.fast and self.device.type == "cuda" and n < self.batch_size:
            pixel_values = torch.cat([pixel_values, pixel_values[:1].expand(self.batch_size - n, -1, -1, -1)])
        input_ids, attention_mask = (t.to(self.device).expand(pixel_values.shape[0], -1) for t in self._prompt())
        with torch.inference_mode():
            new_tokens = generate_caption_ids(self.model, pixel_values, input_ids, attention_mask, self.decoding,
                                              fast=self.fast, stop_token_ids=self.stop_token_ids)
        texts = self.processor.batch_decode(new_tokens[:n], skip_special_tokens=True)
        return [clean_caption(t.rstrip()) for t in texts]  # the "\n" that ends a BLIP-2-OPT caption goes

    def _prompt(self) -> tuple[Any, Any]:
        """The prompt's ``input_ids`` and ``attention_mask`` (1, L), as the processor builds them with an image
        (its query-token placeholders first): the same for every image, so tokenised once."""
        if self._prompt_inputs is None:
            from PIL import Image

            inputs = self.processor(images=[Image.new("RGB", (8, 8))], text=[self.decoding.prompt_text],
                                    return_tensors="pt")
            self._prompt_inputs = (inputs["input_ids"], inputs["attention_mask"])
        return self._prompt_inputs

    def describe(self) -> dict[str, Any]:
        """What produced the captions: recorded in the run configuration."""
        return {"captioner": self.name, "batch_size": self.batch_size, "decoding": asdict(self.decoding),
                "decoding_path": "static-cache" if self.fast else "generate", "stop_token_ids": self.stop_token_ids,
                "dtype": str(self.dtype).removeprefix("torch.")}
