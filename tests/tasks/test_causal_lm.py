"""Causal-LM data: response-only labels, EOS at the end of every target, chat rendering, truncation, packing."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, DataCollatorWithFlattening

from tuneforge.tasks import causal_lm
from tuneforge.tasks.causal_lm import IGNORE
from tuneforge.train.pipelines.generative import token_loss

CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "red cat"},
        {"role": "user", "content": "again"}, {"role": "assistant", "content": "blue dog"}]


@pytest.fixture(scope="module")
def gpt2_tokenizer(tiny_gpt2):
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    causal_lm.ensure_chat_template(tokenizer)
    return tokenizer


def test_prompt_tokens_are_masked_and_the_response_ends_in_eos(gpt2_tokenizer):
    tok = gpt2_tokenizer
    prompt, response = "repeat: red cat\n", "red cat"
    ids, labels = causal_lm.encode_pair(tok, prompt, response)
    prompt_part = tok(prompt)["input_ids"]
    response_part = tok(response, add_special_tokens=False)["input_ids"]
    assert ids == prompt_part + response_part + [tok.eos_token_id]
    assert labels == [IGNORE] * len(prompt_part) + response_part + [tok.eos_token_id]


def test_llama_style_bos_stays_on_the_prompt_and_no_eos_is_added_to_it(tiny_llama):
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    ids, labels = causal_lm.encode_pair(tok, "repeat: sun\n", "sun")
    assert ids[0] == tok.bos_token_id and labels[0] == IGNORE
    assert ids.count(tok.eos_token_id) == 1 and ids[-1] == tok.eos_token_id


def test_default_chat_template_puts_eos_after_every_assistant_turn(gpt2_tokenizer):
    rendered = gpt2_tokenizer.apply_chat_template(CHAT, tokenize=False)
    assert rendered == ("<|user|>\nhi\n<|assistant|>\nred cat</s>\n<|user|>\nagain\n<|assistant|>\nblue dog</s>\n")
    prompt = gpt2_tokenizer.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|user|>\nhi\n<|assistant|>\n"


def test_chat_labels_cover_assistant_turns_only(gpt2_tokenizer):
    tok = gpt2_tokenizer
    ids, labels = causal_lm.encode_chat(tok, CHAT)
    trained = [i for i, label in zip(ids, labels, strict=True) if label != IGNORE]
    eos = tok.eos_token_id
    assert tok.decode(trained) == "red cat</s>blue dog</s>"
    assert sum(1 for i, label in zip(ids, labels, strict=True) if i == eos and label == eos) == 2
    assert tok.decode(ids) == tok.apply_chat_template(CHAT, tokenize=False)  # nothing lost between pieces
    assert tok.decode(causal_lm.chat_prompt_ids(tok, CHAT)) == \
        tok.apply_chat_template(CHAT[:3], tokenize=False, add_generation_prompt=True)


def test_a_template_without_eos_still_trains_eos(gpt2_tokenizer):
    tok = AutoTokenizer.from_pretrained(gpt2_tokenizer.name_or_path)
    causal_lm.ensure_chat_template(tok, "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                                        "{% if add_generation_prompt %}[assistant] {% endif %}")
    ids, labels = causal_lm.encode_chat(tok, CHAT[:2])
    assert [label for label in labels if label != IGNORE][-1] == tok.eos_token_id


def test_chat_cells_are_checked():
    assert causal_lm.parse_messages('[{"role": "user", "content": "x"}]') == [{"role": "user", "content": "x"}]
    with pytest.raises(ValueError, match="role 'bot'"):
        causal_lm.parse_messages([{"role": "bot", "content": "x"}])
    with pytest.raises(ValueError, match="not JSON"):
        causal_lm.parse_messages("[{oops")


def test_truncation_cuts_the_prompt_start_first():
    ids = list(range(10))
    labels = [IGNORE] * 7 + [7, 8, 9]
    cut_ids, cut_labels, truncated = causal_lm.fit_length(ids, labels, 6)
    assert truncated and cut_ids == [4, 5, 6, 7, 8, 9] and cut_labels[-3:] == [7, 8, 9]
    assert causal_lm.fit_length(ids, labels, 10) == (ids, labels, False)


def test_label_mapping_and_scores():
    assert causal_lm.closest_label(" Positive\nmore", ["negative", "positive"]) == "positive"
    assert causal_lm.closest_label("negativ", ["negative", "positive"]) == "negative"
    rows = causal_lm.decode_scores(torch.tensor([[-1.0, -3.0]]).numpy(), ["a", "b"])
    assert rows[0]["label"] == "a" and rows[0]["probabilities"]["a"] == pytest.approx(1 / (1 + torch.e ** -2))


def test_rows_are_packed_first_fit_with_restarting_positions():
    features = [{"input_ids": [5] * n, "labels": [7] * n} for n in (3, 6, 2, 4)]
    batch = causal_lm.PackRows(row_length=8, pad_token_id=0)(features)
    # first fit decreasing: [6, 2] and [4, 3], the second row padded by one
    assert batch["input_ids"].shape == (2, 8)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 0, 1], [0, 1, 2, 3, 0, 1, 2, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 7, 7, 7, 7, 7, IGNORE, 7], [IGNORE, 7, 7, 7, IGNORE, 7, 7, IGNORE]]
    assert batch["input_ids"][1, -1].item() == 0


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
def test_packed_loss_equals_padded_loss(fixture, request):
    folder = request.getfixturevalue(fixture)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa").eval()
    examples = [causal_lm.encode_pair(tok, f"repeat: {p}\n", r)
                for p, r in [("red cat dog", "red cat dog"), ("sun", "sun"), ("one two three four", "one two"),
                             ("fish", "fish rain snow")]]
    features = [{"input_ids": ids, "labels": labels} for ids, labels in examples]
    loss = token_loss(shift=True)
    with torch.no_grad():
        padded = DataCollatorForSeq2Seq(tok, label_pad_token_id=IGNORE)([dict(f) for f in features])
        labels = padded.pop("labels")
        unpacked = loss(model(**padded), labels)
        # Rows of at most 24 tokens: several examples per row, several rows, padding at the end of a row.
        packed = causal_lm.PackRows(24, tok.pad_token_id)([dict(f) for f in features])
        assert packed["input_ids"].shape[0] < len(features) and packed["position_ids"].tolist()[0].count(0) >= 2
        labels = packed.pop("labels")
        packed_loss = loss(model(**packed, use_cache=False), labels)  # as in training: no cache
        # Transformers' own flattening (one row per batch) agrees too.
        flat = DataCollatorWithFlattening(return_position_ids=True)([dict(f) for f in features])
        flat_labels = flat.pop("labels")
        flat_loss = loss(model(**flat, use_cache=False), flat_labels)
        # The same row attended as one long text (no restart of positions) is another loss: the boundaries count.
        crossing = loss(model(input_ids=flat["input_ids"], use_cache=False), flat_labels)
    assert packed_loss.item() == pytest.approx(unpacked.item(), abs=1e-5)
    assert flat_loss.item() == pytest.approx(unpacked.item(), abs=1e-5)
    assert abs(crossing.item() - unpacked.item()) > 1e-3
