"""Causal-LM supervised fine-tuning: prompt/response pairs or chats become token ids whose labels are -100 on
every prompt token, so the loss (and what the model learns) is the response alone, and every response ends with
the end-of-sequence token, so a fine-tuned model learns where to stop.

Also classification as text: the response is the label name, and a label is predicted by scoring each label's
likelihood after the prompt (or by generating and mapping the text to the closest label).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tuneforge.errors import TuneforgeError

NAME = "causal-lm"
IGNORE = -100
ROLES = ("system", "user", "assistant")

# For tokenizers without a chat template: one '<|role|>' line per message and the end-of-sequence token after
# every assistant turn, so generation from '<|assistant|>' learns to stop.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def ensure_chat_template(tokenizer: Any, template: str | None = None) -> None:
    """The recipe's template, else the tokenizer's own, else the default; saved with the tokenizer."""
    if template:
        tokenizer.chat_template = template
    elif not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE


def require_eos(tokenizer: Any, model_name: str) -> int:
    if tokenizer.eos_token_id is None:
        raise TuneforgeError(f"the tokenizer of '{model_name}' has no end-of-sequence token, so a fine-tuned model "
                             "could not learn where to stop",
                             fix="pick a decoder whose tokenizer defines eos_token, or add one to the tokenizer "
                                 "(tokenizer.add_special_tokens({'eos_token': '</s>'})) and save it")
    return int(tokenizer.eos_token_id)


def parse_messages(value: Any) -> list[dict[str, str]]:
    """A chat cell: a list of {role, content}, or its JSON text (CSV); raises ValueError with what is wrong."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"is not JSON ({error.msg})") from None
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of {role, content} messages")
    messages = []
    for position, message in enumerate(value):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"message {position + 1} must have 'role' and 'content'")
        role, content = str(message["role"]), message["content"]
        if role not in ROLES:
            raise ValueError(f"message {position + 1} has role '{role}'; roles are {', '.join(ROLES)}")
        messages.append({"role": role, "content": "" if content is None else str(content)})
    return messages


def with_system(messages: list[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    if system_prompt and messages[0]["role"] != "system":
        return [{"role": "system", "content": system_prompt}, *messages]
    return messages


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """A plain prompt's tokens with the tokenizer's leading specials (e.g. Llama's BOS) but never a trailing EOS,
    which would tell the model the text already ended."""
    ids = list(tokenizer(prompt)["input_ids"])
    eos = tokenizer.eos_token_id
    while ids and eos is not None and ids[-1] == eos and not prompt.endswith(str(tokenizer.eos_token)):
        ids.pop()
    return ids


def response_ids(tokenizer: Any, response: str) -> list[int]:
    ids = _ids(tokenizer, response)
    if not ids or ids[-1] != tokenizer.eos_token_id:
        ids.append(tokenizer.eos_token_id)
    return ids


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def chat_segments(tokenizer: Any, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
    """The rendered chat cut into (text, trained) pieces: each assistant turn (up to and including the EOS token
    the template writes, or that is added) is trained, everything else is prompt.

    The cut points come from rendering the chat up to each assistant turn with the generation prompt, which must
    be a prefix of the chat rendered one turn further: true of every common template.
    """
    eos = str(tokenizer.eos_token)
    pieces: list[tuple[str, bool]] = []
    done = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = _render(tokenizer, messages[:index], True)
        full = _render(tokenizer, messages[:index + 1], False)
        if not prefix.startswith(done) or not full.startswith(prefix):
            raise TuneforgeError("the chat template does not render a chat one turn after another (a shorter chat "
                                 "is not the start of a longer one), so the assistant turns cannot be found",
                                 fix="set lm.chat_template to a template that renders turns in order")
        answer = full[len(prefix):]
        cut = answer.rfind(eos)
        trained, rest = (answer[:cut + len(eos)], answer[cut + len(eos):]) if cut >= 0 else (answer, "")
        pieces.append((prefix[len(done):], False))
        pieces.append((trained, True))
        done = prefix + trained
        if rest:
            pieces.append((rest, False))
            done += rest
    if not any(trained for _, trained in pieces):
        raise ValueError("has no assistant message to learn from")
    return pieces


def encode_chat(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a chat; labels are -100 outside the assistant turns, each of which ends in EOS."""
    ids: list[int] = []
    labels: list[int] = []
    eos = tokenizer.eos_token_id
    for text, trained in chat_segments(tokenizer, messages):
        piece = _ids(tokenizer, text)
        if trained and (not piece or piece[-1] != eos):
            piece.append(eos)
        ids += piece
        labels += piece if trained else [IGNORE] * len(piece)
    return ids, labels


def encode_pair(tokenizer: Any, prompt: str, response: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a prompt and its response; labels are -100 on the prompt, the response ends in EOS."""
    head, tail = prompt_ids(tokenizer, prompt), response_ids(tokenizer, response)
    return head + tail, [IGNORE] * len(head) + tail


def fit_length(ids: list[int], labels: list[int], max_length: int) -> tuple[list[int], list[int], bool]:
    """Cut to max_length: the prompt loses its start first (the end of a prompt says most about the response),
    down to half the budget; then the response loses its end. Returns (ids, labels, truncated)."""
    if len(ids) <= max_length:
        return ids, labels, False
    first_trained = next((i for i, label in enumerate(labels) if label != IGNORE), len(labels))
    drop = min(len(ids) - max_length, max(0, first_trained - max_length // 2))
    ids, labels = ids[drop:], labels[drop:]
    return ids[:max_length], labels[:max_length], True


class TokenizeCausal:
    """Picklable batch tokenizer (datasets fingerprints it and reuses the cached result on the next run)."""

    def __init__(self, tokenizer: Any, max_length: int, chat: bool) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.chat = chat

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "truncated": []}
        if self.chat:
            pairs = [encode_chat(self.tokenizer, parse_messages(messages)) for messages in batch["messages"]]
        else:
            pairs = [encode_pair(self.tokenizer, p, r) for p, r in zip(batch["prompt"], batch["response"],
                                                                       strict=True)]
        for ids, labels in pairs:
            ids, labels, cut = fit_length(ids, labels, self.max_length)
            out["input_ids"].append(ids)
            out["labels"].append(labels)
            out["truncated"].append(cut)
        return out


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """What a chat's reply is generated from: the chat up to (not including) its last assistant turn."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    history = messages[:last] if last < len(messages) else messages
    return _ids(tokenizer, _render(tokenizer, history, True))


def label_response(prompt_template: str, label: str) -> str:
    """The response text of a label: after a prompt ending in a non-space, a space first, as a writer would."""
    return label if prompt_template.endswith((" ", "\n")) else f" {label}"


# ------------------------------------------------------------------------------------------------------
# Classification as text
# ------------------------------------------------------------------------------------------------------

@torch.inference_mode()
def label_log_likelihoods(model: Any, tokenizer: Any, prompts: Sequence[list[int]], labels: Sequence[str],
                          prompt_template: str, device: torch.device, batch_size: int = 16) -> np.ndarray:
    """log P(label text + EOS | prompt) for every prompt and label, shaped (prompts, labels).

    The EOS counts, so a label that is the start of another ('pos' / 'positive') is not favoured for being short.
    """
    answers = [response_ids(tokenizer, label_response(prompt_template, label)) for label in labels]
    rows = [(p, a) for p in prompts for a in answers]
    scores = np.zeros(len(rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            width = max(len(p) + len(a) for p, a in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            targets = torch.full_like(ids, IGNORE)
            for row, (prompt, answer) in enumerate(chunk):
                sequence = list(prompt) + answer
                ids[row, :len(sequence)] = torch.tensor(sequence)
                mask[row, :len(sequence)] = 1
                targets[row, len(prompt):len(sequence)] = torch.tensor(answer)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
            shifted = targets[:, 1:].to(device)
            picked = log_probs.gather(-1, shifted.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            totals = (picked * (shifted != IGNORE)).sum(-1)
            scores[start:start + len(chunk)] = totals.cpu().numpy()
    finally:
        model.train(was_training)
    return scores.reshape(len(prompts), len(labels))


def closest_label(text: str, labels: Sequence[str]) -> str:
    """A generated text mapped onto the label set: exact (case-insensitive) first, else the most similar name."""
    clean = text.strip().splitlines()[0].strip().lower() if text.strip() else ""
    for label in labels:
        if clean == label.lower():
            return label
    for label in labels:
        if clean.startswith(label.lower()):
            return label
    return max(labels, key=lambda label: difflib.SequenceMatcher(None, clean, label.lower()).ratio())


def decode_scores(scores: np.ndarray, labels: Sequence[str]) -> list[dict[str, Any]]:
    """Per text: the label, its probability and every label's probability (softmax over label likelihoods)."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    rows = []
    for row in probabilities:
        best = int(row.argmax())
        rows.append({"label": labels[best], "score": float(row[best]),
                     "probabilities": {name: float(p) for name, p in zip(labels, row, strict=True)}})
    return rows


def classification_metrics(predicted: Sequence[str], truth: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(truth, predicted)),
            "f1_macro": float(f1_score(truth, predicted, labels=list(labels), average="macro", zero_division=0)),
            "examples": len(truth)}


# ------------------------------------------------------------------------------------------------------
# Packing
# ------------------------------------------------------------------------------------------------------

class PackRows:
    """Collator that packs a batch's examples into as few rows of at most `row_length` tokens as fit (first-fit
    decreasing), with position ids restarting at 0 for every example and no attention mask: Transformers then
    reads the position ids as example boundaries and attends block-diagonally, so no example sees another.

    Written here because Transformers' DataCollatorWithFlattening puts the whole batch in ONE row: without a
    variable-length attention kernel (FlashAttention) attention then costs (batch x length)^2 per row instead of
    length^2 per example. Rows of `row_length` keep that bounded and still leave almost no padding. The padding
    at the end of a row is one more block of its own (positions from 0, labels -100), so it touches nothing.
    The first token of every example gets label -100: the token before it belongs to another example.
    """

    def __init__(self, row_length: int, pad_token_id: int) -> None:
        self.row_length = row_length
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sizes = [len(feature["input_ids"]) for feature in features]
        rows: list[list[int]] = []
        free: list[int] = []
        for index in sorted(range(len(features)), key=lambda i: -sizes[i]):
            for row, space in enumerate(free):
                if sizes[index] <= space:
                    rows[row].append(index)
                    free[row] -= sizes[index]
                    break
            else:
                rows.append([index])
                free.append(max(self.row_length, sizes[index]) - sizes[index])
        width = max(sum(sizes[i] for i in row) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for row, members in enumerate(rows):
            start = 0
            for index in members:
                end = start + sizes[index]
                input_ids[row, start:end] = torch.as_tensor(features[index]["input_ids"])
                labels[row, start + 1:end] = torch.as_tensor(features[index]["labels"][1:])
                positions[row, start:end] = torch.arange(sizes[index])
                start = end
            positions[row, start:] = torch.arange(width - start)
        return {"input_ids": input_ids, "labels": labels, "position_ids": positions}
