"""IFASProcessor: the batch contract the trainer relies on, the template, padding sides, save/load."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def processor():
    from ifas_model.presets import build_tiny_tokenizer
    from ifas_model.processing import IFASProcessor, build_image_processor

    return IFASProcessor(build_image_processor(224), build_tiny_tokenizer())


def _images(n, size=(90, 70)):
    from PIL import Image

    return [Image.new("L" if i % 2 else "RGB", size, 40 * i) for i in range(n)]


def test_training_batch_contract(processor):
    from scf.schema import QUESTION

    batch = processor(_images(3), judgments=["Yes", "No", "Yes"],
                      interpretations=["This is a man with glasses", "This is a printed paper photo of a face", ""])
    assert set(batch) == {"pixel_values", "input_ids", "attention_mask", "labels", "answer_segments"}
    assert tuple(batch["pixel_values"].shape) == (3, 3, 224, 224)
    ids, mask, labels, seg = batch["input_ids"], batch["attention_mask"], batch["labels"], batch["answer_segments"]
    assert ids.shape == mask.shape == labels.shape == seg.shape
    n_prompt = len(processor.prompt_ids)
    tok = processor.tokenizer
    yes, no = processor.judgment_token_ids["Yes"], processor.judgment_token_ids["No"]
    for row in range(3):
        length = int(mask[row].sum())
        assert mask[row, :length].all() and not mask[row, length:].any()  # right padding
        assert (labels[row, :n_prompt] == -100).all() and (seg[row, :n_prompt] == 0).all()
        assert (labels[row, length:] == -100).all() and (seg[row, length:] == 0).all()
        assert ids[row, 0] == tok.bos_token_id
        assert QUESTION in tok.decode(ids[row, :n_prompt])
        # exactly one judgment token right after the prompt, trained as " Yes" / " No"
        assert (seg[row] == 1).sum() == 1 and seg[row, n_prompt] == 1
        assert labels[row, n_prompt] == (yes if row != 1 else no)
        assert (labels[row, :length] == ids[row, :length]).logical_or(labels[row, :length] == -100).all()
    # interpretation: ". This is ..." then EOS, segment 2
    row0 = labels[0][seg[0] == 2].tolist()
    assert row0[-1] == tok.eos_token_id
    assert tok.decode(row0[:-1]) == ". This is a man with glasses"
    assert tok.decode([int(labels[0, n_prompt]), *row0[:-1]]) == " Yes. This is a man with glasses"
    # judgment-only answer: the judgment token alone, no EOS, no segment 2
    assert int(mask[2].sum()) == n_prompt + 1 and (seg[2] == 2).sum() == 0


def test_prompt_only_batch_is_left_padded_and_ends_with_the_prompt(processor):
    batch = processor(_images(2))
    assert set(batch) == {"pixel_values", "input_ids", "attention_mask"}
    assert batch["input_ids"].shape == (2, len(processor.prompt_ids))
    assert batch["input_ids"][0].tolist() == processor.prompt_ids
    assert processor.tokenizer.decode(batch["input_ids"][0]).endswith("Answer:")


def test_judgment_tokens_are_single_tokens_with_leading_space(processor):
    ids = processor.judgment_token_ids
    tok = processor.tokenizer
    assert tok.decode([ids["Yes"]]) == " Yes" and tok.decode([ids["No"]]) == " No"
    assert tok("Yes", add_special_tokens=False)["input_ids"] != [ids["Yes"]]  # "Yes" != " Yes" (OPT's GPT-2 BPE)


def test_long_interpretations_are_cut_keeping_eos():
    from ifas_model.presets import build_tiny_tokenizer
    from ifas_model.processing import IFASProcessor, build_image_processor

    proc = IFASProcessor(build_image_processor(32), build_tiny_tokenizer(), max_length=24)
    batch = proc(_images(1), judgments=["No"], interpretations=["This is " + "a paper mask " * 30])
    assert batch["input_ids"].shape[1] == 24
    assert batch["labels"][0, -1] == proc.eos_token_id


def test_bad_inputs_name_the_problem(processor):
    with pytest.raises(ValueError, match=r"judgments\[1\]"):
        processor(_images(2), judgments=["Yes", "yes"])
    with pytest.raises(ValueError, match="2 images but 1 judgments"):
        processor(_images(2), judgments=["Yes"])
    with pytest.raises(ValueError, match="interpretations need judgments"):
        processor(_images(1), interpretations=["This is a man"])


def test_decode_answer_splits_judgment_and_explanation(processor):
    tok = processor.tokenizer
    ids = [processor.judgment_token_ids["No"],
           *tok(". This is a printed paper photo", add_special_tokens=False)["input_ids"], tok.eos_token_id]
    assert processor.decode_answer(ids) == ("No", "This is a printed paper photo")
    assert processor.decode_answer([]) == ("", "")


def test_save_and_load_round_trip(processor, tmp_path):
    from ifas_model.processing import IFASProcessor

    processor.save_pretrained(tmp_path)
    again = IFASProcessor.from_pretrained(tmp_path)
    images = _images(2)
    a = processor(images, judgments=["Yes", "No"], interpretations=["This is a man", ""])
    b = again(images, judgments=["Yes", "No"], interpretations=["This is a man", ""])
    for key in a:
        assert (a[key] == b[key]).all(), key
    assert again.judgment_token_ids == processor.judgment_token_ids


def test_loading_a_folder_without_processor_config_fails_clearly(tmp_path):
    from ifas_model.processing import IFASProcessor

    with pytest.raises(ValueError, match="not a saved I-FAS processor"):
        IFASProcessor.from_pretrained(tmp_path)


def test_a_tokenizer_that_splits_yes_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from ifas_model.processing import judgment_token_ids_for

    vocab = {c: i for i, c in enumerate(["<unk>", "Ġ", "Y", "e", "s", "N", "o"])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", max_input_chars_per_word=1))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    with pytest.raises(ValueError, match="one token"):
        judgment_token_ids_for(fast)
