"""What the generative tasks (seq2seq, causal-lm) share: the recipe's generation settings, batched generation,
and the text metrics (BLEU and chrF through sacrebleu, ROUGE through rouge-score)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tuneforge.recipe import GenerationSpec

SAMPLE_COUNT = 5  # generations shown in metrics.json, the report and the model card


def generation_kwargs(spec: GenerationSpec, tokenizer: Any, **overrides: Any) -> dict[str, Any]:
    """`model.generate` arguments from the recipe; sampling-only settings are left out of greedy/beam search so
    Transformers does not warn that they are ignored."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": spec.max_new_tokens,
        "num_beams": spec.num_beams,
        "do_sample": spec.do_sample,
        "repetition_penalty": spec.repetition_penalty,
        "no_repeat_ngram_size": spec.no_repeat_ngram_size,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if spec.do_sample:
        kwargs.update(temperature=spec.temperature, top_p=spec.top_p, top_k=spec.top_k)
    kwargs.update({key: value for key, value in overrides.items() if value is not None})
    if not kwargs.get("do_sample"):
        for key in ("temperature", "top_p", "top_k"):
            kwargs.pop(key, None)
    return kwargs


def apply_to_generation_config(model: Any, spec: GenerationSpec, tokenizer: Any) -> None:
    """Store the recipe's settings in the model's generation_config, so the saved model generates the same way
    with plain Transformers (`model.generate(...)`) as through tuneforge."""
    config = model.generation_config
    for key, value in generation_kwargs(spec, tokenizer).items():
        setattr(config, key, value)
    if not spec.do_sample:  # a chat model's shipped sampling settings would contradict greedy decoding on save
        for key in ("temperature", "top_p", "top_k"):
            setattr(config, key, None)
    if getattr(model.config, "is_encoder_decoder", False) and config.decoder_start_token_id is None:
        config.decoder_start_token_id = getattr(model.config, "decoder_start_token_id", None) or \
            tokenizer.pad_token_id


@torch.inference_mode()
def generate(model: Any, tokenizer: Any, encoded: Sequence[list[int]], spec: GenerationSpec,
             device: torch.device, decoder_only: bool, **overrides: Any) -> list[str]:
    """Generate one text per tokenized input, in input order; returns only the new text (never the prompt).

    Inputs are batched by length so little goes to padding; decoders are padded on the left, so every prompt
    ends where generation starts.
    """
    kwargs = generation_kwargs(spec, tokenizer, **overrides)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    outputs: list[str] = [""] * len(encoded)
    torch.manual_seed(spec.seed)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), spec.batch_size):
            chunk = order[start:start + spec.batch_size]
            rows = [list(encoded[i]) or [pad] for i in chunk]
            width = max(len(row) for row in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for position, row in enumerate(rows):
                if decoder_only:
                    ids[position, width - len(row):] = torch.tensor(row)
                    mask[position, width - len(row):] = 1
                else:
                    ids[position, :len(row)] = torch.tensor(row)
                    mask[position, :len(row)] = 1
            generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
            if decoder_only:
                generated = generated[:, width:]
            texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
            for position, index in enumerate(chunk):
                outputs[index] = texts[position].strip()
    finally:
        model.train(was_training)
    return outputs


def text_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu, its default tokenisation), mean ROUGE-1/2/L F1 (rouge-score, stemmed),
    exact match and mean generated length in words; BLEU, chrF and ROUGE on a 0-100 scale like their papers."""
    import sacrebleu
    from rouge_score import rouge_scorer

    predictions = [str(p) for p in predictions]
    references = [str(r) for r in references]
    if len(predictions) != len(references):
        raise ValueError("predictions and references must pair up")
    if not predictions:
        return {}
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(reference, prediction)
        for key in totals:
            totals[key] += scores[key].fmeasure
    count = len(predictions)
    return {
        "bleu": float(sacrebleu.corpus_bleu(predictions, [references]).score),
        "chrf": float(sacrebleu.corpus_chrf(predictions, [references]).score),
        **{key: 100.0 * value / count for key, value in totals.items()},
        "exact_match": sum(p.strip() == r.strip() for p, r in zip(predictions, references, strict=True)) / count,
        "generated_words": sum(len(p.split()) for p in predictions) / count,
        "examples": count,
    }
