"""Contextual replacement (Kobayashi, 2018): mask some words and let a masked language model propose words
that fit the sentence, instead of dictionary synonyms that may not.

Eligible words are the synonym augmenter's (`base.eligible_spans`: no stop-words, no capitalised mid-sentence
words, likely names). Each chosen word becomes one mask token; the replacement is drawn from the model's
`top_k` whole-word predictions at that position (probability-weighted, from the seeded `rng`), never the
word itself, a stop-word or a sub-word piece. All masks of a variant are filled in one forward pass.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from tuneforge.augment.base import STOP_WORDS, TRIES_PER_VARIANT, WORD, eligible_spans, match_case, normalise
from tuneforge.errors import TuneforgeError
from tuneforge.models.resolve import resolve_model

NO_MLM_HEAD_FIX = ("name a model trained with masked language modelling that keeps its MLM head, e.g. "
                   "bert-base-uncased, distilroberta-base or a local folder saved from *ForMaskedLM; "
                   "sentence-embedding models such as the bundled minilm ship the encoder only")


def load_masked_lm(name: str) -> tuple[Any, Any]:
    """(tokenizer, model) of a masked LM, refusing a checkpoint whose MLM head would be random."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    resolved = resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, local_files_only=resolved.offline)
        model, info = AutoModelForMaskedLM.from_pretrained(resolved.path, local_files_only=resolved.offline,
                                                           use_safetensors=True, trust_remote_code=False,
                                                           output_loading_info=True)
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TuneforgeError(f"could not load '{name}' as a masked language model: {reason}",
                             fix=NO_MLM_HEAD_FIX) from None
    prefix = f"{model.base_model_prefix}."
    head_missing = sorted(key for key in info.get("missing_keys", ()) if not key.startswith(prefix))
    if head_missing:
        raise TuneforgeError(f"'{name}' has no masked-LM head: its checkpoint lacks {', '.join(head_missing[:3])}"
                             f"{' ...' if len(head_missing) > 3 else ''}, so its predictions would be random",
                             fix=NO_MLM_HEAD_FIX)
    if tokenizer.mask_token is None:
        raise TuneforgeError(f"the tokenizer of '{name}' has no mask token", fix=NO_MLM_HEAD_FIX)
    model.eval()
    return tokenizer, model


@dataclass
class ContextualReplacement:
    """Replaces `fraction` of the eligible words (at least one) with masked-LM predictions."""

    model_name: str
    fraction: float = 0.15
    top_k: int = 10
    batch_size: int = 32
    name: str = "contextual"
    _loaded: tuple[Any, Any] | None = field(default=None, repr=False)
    _marker: str = field(default="", repr=False)

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            self._loaded = load_masked_lm(self.model_name)
            self._marker = word_start_marker(self._loaded[0])
        return self._loaded

    def augment(self, texts: list[str], counts: list[int], rng: random.Random) -> list[list[str]]:
        results: list[list[str]] = [[] for _ in texts]
        spans = [eligible_spans(text) if count else [] for text, count in zip(texts, counts, strict=True)]
        seen = [{normalise(text)} for text in texts]
        for _ in range(TRIES_PER_VARIANT):
            # One attempt per missing variant per round, batched across texts.
            jobs = []
            for index, count in enumerate(counts):
                found = spans[index]
                if not found:
                    continue
                size = min(len(found), max(1, int(self.fraction * len(found))))
                for _ in range(count - len(results[index])):
                    jobs.append((index, sorted(rng.sample(found, size))))
            if not jobs:
                break
            for (index, _), variant in zip(jobs, self._fill(texts, jobs, rng), strict=True):
                key = normalise(variant) if variant else ""
                if key and key not in seen[index] and len(results[index]) < counts[index]:
                    seen[index].add(key)
                    results[index].append(variant)
        return results

    def _fill(self, texts: list[str], jobs: list[tuple[int, list[tuple[int, int]]]], rng: random.Random
              ) -> list[str | None]:
        import torch

        tokenizer, model = self._model()
        masked = []
        for index, chosen in jobs:
            text, pieces, cursor = texts[index], [], 0
            for start, end in chosen:
                pieces += [text[cursor:start], tokenizer.mask_token]
                cursor = end
            masked.append("".join(pieces) + text[cursor:])
        out: list[str | None] = []
        for start in range(0, len(jobs), self.batch_size):
            batch = tokenizer(masked[start:start + self.batch_size], return_tensors="pt", padding=True,
                              truncation=True, max_length=min(512, tokenizer.model_max_length))
            with torch.no_grad():
                logits = model(**batch).logits
            for row, (index, chosen) in enumerate(jobs[start:start + self.batch_size]):
                positions = (batch["input_ids"][row] == tokenizer.mask_token_id).nonzero().flatten().tolist()
                if len(positions) != len(chosen):  # a mask cut off by truncation: skip this attempt
                    out.append(None)
                    continue
                words = [self._pick(tokenizer, logits[row, position], texts[index][s:e], rng)
                         for position, (s, e) in zip(positions, chosen, strict=True)]
                out.append(None if None in words else _rebuild(texts[index], chosen, words))
        return out

    def _pick(self, tokenizer: Any, scores: Any, original: str, rng: random.Random) -> str | None:
        import torch

        probabilities = torch.softmax(scores.float(), dim=-1)
        top = torch.topk(probabilities, k=min(probabilities.numel(), self.top_k * 4))
        options, weights = [], []
        marker = self._marker
        for token_id, weight in zip(top.indices.tolist(), top.values.tolist(), strict=True):
            piece = tokenizer.convert_ids_to_tokens(token_id)
            word = tokenizer.decode([token_id]).strip()
            # Whole words only: a sub-word piece ("##ing", or a BPE piece without the word-start mark),
            # punctuation or a special token would break the text.
            if piece.startswith("##") or (marker and not piece.startswith(marker)) or not WORD.fullmatch(word) \
                    or word.lower() in STOP_WORDS or word.lower() == original.lower() \
                    or token_id in tokenizer.all_special_ids:
                continue
            options.append(word)
            weights.append(weight)
            if len(options) == self.top_k:
                break
        if not options:
            return None
        return match_case(original, rng.choices(options, weights=weights)[0])


def _rebuild(text: str, chosen: list[tuple[int, int]], words: list[str | None]) -> str:
    pieces, cursor = [], 0
    for (start, end), word in zip(chosen, words, strict=True):
        pieces += [text[cursor:start], word or text[start:end]]
        cursor = end
    return " ".join(("".join(pieces) + text[cursor:]).split())


def word_start_marker(tokenizer: Any) -> str:
    """'Ġ' (byte-level BPE) or '▁' (SentencePiece) when the vocabulary marks word starts, else ''."""
    pieces = tokenizer.tokenize("a hello")
    return next((mark for mark in ("Ġ", "▁") if any(p.startswith(mark) for p in pieces)), "")
