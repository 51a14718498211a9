"""Prediction and held-out scoring of preference and reward runs.

A preference run is a decoder like a causal-lm run: it loads as a `GenerativePredictor` and writes text. A reward
run is a one-score sequence classifier: `RewardScorer` scores a response, or a prompt and its response, the way
TRL's RewardTrainer saw them in training (text plus the end-of-sequence token, or the chat rendered with the run's
template). Training shares the sequence building and scoring here, so a held-out score and a later prediction are
the same number.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tuneforge import kinds
from tuneforge.errors import TuneforgeError
from tuneforge.kinds import RunKind
from tuneforge.predict import checks
from tuneforge.predict.generative import GenerativePredictor
from tuneforge.predict.protocol import LoadRequest
from tuneforge.predict.registry import loads
from tuneforge.predict.text import load_model
from tuneforge.recipe import Recipe
from tuneforge.run import RunLayout
from tuneforge.runtime import pick_device
from tuneforge.tasks.causal_lm import parse_messages

Chat = list[dict[str, str]]


# ------------------------------------------------------------------------------------------------------
# Sequences as TRL builds them
# ------------------------------------------------------------------------------------------------------

def _chat_ids(tokenizer: Any, messages: Chat, generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _with_eos(tokenizer: Any, text: str) -> str:
    eos = tokenizer.eos_token
    return text if eos is None or text.endswith(eos) else text + eos


def sequence_ids(tokenizer: Any, prompt: str | Chat, completion: str | Chat) -> tuple[list[int], int]:
    """(token ids of prompt + completion, where the completion starts): plain text gets the end-of-sequence
    token after the completion, a chat is rendered with the tokenizer's template, as TRL's DPO, KTO and reward
    trainers tokenise them. The completion starts where the prompt alone and the whole diverge."""
    if isinstance(prompt, list) or isinstance(completion, list):
        opening = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}] if prompt \
            else []
        answer = completion if isinstance(completion, list) else [{"role": "assistant", "content": str(completion)}]
        head = _chat_ids(tokenizer, opening, True) if opening else []
        whole = _chat_ids(tokenizer, opening + answer, False)
    else:
        head = list(tokenizer(prompt)["input_ids"])
        whole = list(tokenizer(prompt + _with_eos(tokenizer, completion))["input_ids"])
    start = 0
    for first, second in zip(head, whole, strict=False):
        if first != second:
            break
        start += 1
    return whole, start


def _batches(sequences: list[list[int]], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _padded(sequences: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, values in enumerate(sequences):
        ids[row, :len(values)] = torch.tensor(values, dtype=torch.long)
        mask[row, :len(values)] = 1
    return ids.to(device), mask.to(device)


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad or 0)


@torch.inference_mode()
def completion_log_probs(model: Any, tokenizer: Any, prompts: Sequence[Any], completions: Sequence[Any],
                         max_length: int, device: torch.device, batch_size: int = 8) -> np.ndarray:
    """The summed log-probability of each completion after its prompt (sequences cut at max_length tokens)."""
    built = [sequence_ids(tokenizer, prompt, completion) for prompt, completion in zip(prompts, completions,
                                                                                          strict=True)]
    sequences = [ids[:max_length] for ids, _ in built]
    result = np.zeros(len(built))
    was_training = model.training
    model.eval()
    for chunk in _batches(sequences, batch_size):
        ids, mask = _padded([sequences[i] for i in chunk], _pad_id(tokenizer), device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        targets = ids[:, 1:]
        token = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        positions = torch.arange(targets.size(1), device=device).unsqueeze(0)
        starts = torch.tensor([max(built[i][1], 1) for i in chunk], device=device).unsqueeze(1)
        scored = (positions + 1 >= starts) & mask[:, 1:].bool()  # target t + 1 belongs to the completion
        result[chunk] = (token * scored).sum(-1).cpu().numpy()
    model.train(was_training)
    return result


@torch.inference_mode()
def reward_scores(model: Any, tokenizer: Any, prompts: Sequence[Any], completions: Sequence[Any],
                  max_length: int, device: torch.device, batch_size: int = 16) -> np.ndarray:
    """A reward model's score of each completion after its prompt."""
    sequences = [sequence_ids(tokenizer, prompt, completion)[0][:max_length]
                 for prompt, completion in zip(prompts, completions, strict=True)]
    result = np.zeros(len(sequences))
    was_training = model.training
    model.eval()
    for chunk in _batches(sequences, batch_size):
        ids, mask = _padded([sequences[i] for i in chunk], _pad_id(tokenizer), device)
        result[chunk] = model(input_ids=ids, attention_mask=mask).logits[:, 0].float().cpu().numpy()
    model.train(was_training)
    return result


def pair_summary(chosen: np.ndarray, rejected: np.ndarray) -> dict[str, float]:
    """Accuracy (chosen above rejected) and mean margin of per-pair rewards."""
    margins = chosen - rejected
    return {"reward_accuracy": float((margins > 0).mean()), "reward_margin": float(margins.mean()),
            "pairs": len(margins)}


# ------------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------------

def chat_run(root: Any) -> bool:
    """Whether a preference or reward run was trained on chats (data.json's record of its rows)."""
    path = RunLayout(root).data_summary
    return bool(path.is_file() and checks.read_json(path).get("chat"))


def generating_view(recipe: Recipe, chat: bool) -> Recipe:
    """The preference run's recipe as the causal-lm run it generates like: the same model, prompts and generation
    settings, a chat template for chat runs."""
    # model_copy(update=...) skips validation on purpose: the preference section stays as the run had it.
    data = recipe.data.model_copy(update={"messages_column": recipe.data.prompt_column} if chat else {})
    return recipe.model_copy(update={"task": "causal-lm", "data": data}, deep=True)


@loads(kinds.PREFERENCE)
def load_preference(request: LoadRequest) -> GenerativePredictor:
    """A preference run: a decoder (or base + adapter) that writes text like a causal-lm run."""
    model, tokenizer = load_model(request, labelled=False)
    view = generating_view(request.recipe, chat_run(request.root))
    predictor = GenerativePredictor(model, tokenizer, view, pick_device(request.device))
    return predictor.bind(request)  # type: ignore[return-value]


class RewardScorer:
    """A reward run's model: one score per response, higher for a response the data preferred.

    `predict(texts)` scores whole texts (prompt and response together, or a chat as a list of {role, content});
    `predict(prompts, responses)` scores each response after its prompt. Scores compare responses to the same
    prompt; they are not probabilities."""

    labels: list[str] | None = None
    temperature: float = 1.0

    def __init__(self, model: Any, tokenizer: Any, recipe: Recipe, device: torch.device, kind: RunKind) -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.recipe = recipe
        self.device = device
        self.kind = kind

    def _pairs(self, inputs: Sequence[Any], pairs: Sequence[Any] | None) -> tuple[list[Any], list[Any]]:
        if isinstance(inputs, str):
            raise TypeError("predict takes a list of texts; wrap a single text in a list")
        if pairs is not None and len(pairs) != len(inputs):
            raise ValueError("pairs must have one response per prompt")
        prompts, completions = [], []
        for index, value in enumerate(inputs):
            chat = _as_chat(value)
            if pairs is not None:
                prompts.append(chat if chat is not None else str(value))
                completions.append(_as_chat(pairs[index]) or str(pairs[index]))
            elif chat is not None:  # a whole chat, rendered as one conversation
                prompts.append([])
                completions.append(chat)
            else:
                prompts.append("")
                completions.append(str(value))
        return prompts, completions

    def logits(self, inputs: Sequence[Any], pairs: Sequence[Any] | None = None, batch_size: int = 64
               ) -> np.ndarray:
        """Scores shaped (inputs, 1), like a one-output head's logits."""
        prompts, completions = self._pairs(inputs, pairs)
        scores = reward_scores(self.model, self.tokenizer, prompts, completions, self.recipe.train.max_length,
                               self.device, batch_size)
        return scores.reshape(-1, 1)

    def predict(self, inputs: Sequence[Any], pairs: Sequence[Any] | None = None, batch_size: int = 64
                ) -> list[dict[str, Any]]:
        return [{"score": float(score)} for score in self.logits(inputs, pairs, batch_size)[:, 0]]

    def probabilities(self, inputs: Sequence[Any], pairs: Sequence[Any] | None = None, batch_size: int = 64
                      ) -> np.ndarray:
        raise TuneforgeError("a reward model gives one score per response, not class probabilities",
                             fix="use predict() (or logits()) and compare the scores of responses to one prompt")


def _as_chat(value: Any) -> Chat | None:
    if isinstance(value, list) or (isinstance(value, str) and value.lstrip().startswith("[")):
        try:
            return parse_messages(value if isinstance(value, list) else json.loads(value))
        except ValueError:
            return None
    return None


@loads(kinds.REWARD)
def load_reward(request: LoadRequest) -> RewardScorer:
    """A reward run: its one-score model (or base + adapter) and tokenizer."""
    model, tokenizer = load_model(request, labelled=False)
    return RewardScorer(model, tokenizer, request.recipe, pick_device(request.device), request.kind)
