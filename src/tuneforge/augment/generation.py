"""Generation with a language model: paraphrases of each original, or new examples written from a label and a
few examples of it, kept only when a classifier agrees with the label.

The generator is any Transformers causal LM (GPT-2, Llama, ...) or sequence-to-sequence model (T5, BART, ...):
a hub id when online, a local folder, or a tuneforge run directory (its model/ folder). It is loaded here
through AutoModelForCausalLM / AutoModelForSeq2SeqLM with safetensors only and without remote code.

Prompts (the generator sees exactly these; a model fine-tuned on such prompts follows them best):
- paraphrase, causal: "Paraphrase: {text}\\nParaphrase:" and the first generated line is the variant;
  seq2seq: "paraphrase: {text}".
- label_conditioned, causal: "Examples of {label} texts:\\n- {example}\\n- ...\\n-" and the first generated
  line is a new example; seq2seq: "write a {label} text like: {example} | {example}".

A generator drifts off the label (a paraphrase of a complaint that comes out neutral, a "positive" example
that is not). The filter classifier predicts the label of every generation and keeps it only when that is the
original's label with probability >= min_confidence. By default the filter is a TF-IDF + logistic-regression
classifier fitted on the training split being augmented (seconds on a CPU, and it knows the labels); naming a
tuneforge run directory as filter_model uses that fine-tuned model instead.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneforge.augment.base import normalise
from tuneforge.errors import TuneforgeError
from tuneforge.models.resolve import resolve_model

# texts -> (predicted label, probability of that label) per text
LabelFilter = Callable[[list[str]], list[tuple[str, float]]]
MAX_PROMPT_TOKENS = 384


def prompt_for(mode: str, encoder_decoder: bool, text: str, label: str, examples: Sequence[str]) -> str:
    if mode == "paraphrase":
        return f"paraphrase: {text}" if encoder_decoder else f"Paraphrase: {text}\nParaphrase:"
    if encoder_decoder:
        return f"write a {label} text like: " + " | ".join(examples)
    return f"Examples of {label} texts:\n" + "".join(f"- {example}\n" for example in examples) + "-"


def first_line(text: str) -> str:
    """The generated example: the first non-empty line, spaces collapsed."""
    for line in text.splitlines():
        if line.strip():
            return " ".join(line.split())
    return ""


def fit_default_filter(texts: Sequence[str], labels: Sequence[str]) -> LabelFilter:
    """TF-IDF (word 1-2 grams) + logistic regression on the split being augmented."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from threadpoolctl import threadpool_limits

    if len(set(labels)) < 2:
        raise TuneforgeError("the generation filter needs at least two labels to tell on-label text from off-label",
                             fix="augment a split with two or more classes, or name filter_model")
    classifier = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                               LogisticRegression(max_iter=1000, C=4.0))
    with threadpool_limits(1):  # one BLAS thread: more only contend on a busy CPU
        classifier.fit(list(texts), list(labels))
    classes = [str(c) for c in classifier.classes_]

    def predict(batch: list[str]) -> list[tuple[str, float]]:
        if not batch:
            return []
        with threadpool_limits(1):
            probabilities = classifier.predict_proba(batch)
        return [(classes[int(row.argmax())], float(row.max())) for row in probabilities]

    return predict


def run_filter(run_dir: str) -> LabelFilter:
    """The classifier of a tuneforge run directory."""
    import tuneforge

    try:
        predictor = tuneforge.load(run_dir)
    except TuneforgeError as error:
        raise TuneforgeError(f"filter_model '{run_dir}': {error.message}",
                             fix="name a tuneforge classification run directory, or leave filter_model empty to "
                                 "use a TF-IDF + logistic-regression filter fitted on the training split") from None

    def predict(batch: list[str]) -> list[tuple[str, float]]:
        rows = predictor.predict(batch) if batch else []
        return [(str(row.get("label")), float(row.get("score", 0.0))) for row in rows]

    return predict


def load_generator(name: str) -> tuple[Any, Any, bool]:
    """(tokenizer, model, is_encoder_decoder), safetensors only, no remote code."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    resolved = resolve_model(name)
    options = {"local_files_only": resolved.offline, "trust_remote_code": False}
    try:
        config = AutoConfig.from_pretrained(resolved.path, **options)
        encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        loader = AutoModelForSeq2SeqLM if encoder_decoder else AutoModelForCausalLM
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, **options)
        model = loader.from_pretrained(resolved.path, use_safetensors=True, **options)
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TuneforgeError(
            f"could not load the generator '{name}': {reason}",
            fix="name a causal LM (GPT-2, Llama, ...) or a sequence-to-sequence model (T5, BART, ...) with "
                "safetensors weights: a local folder, a tuneforge run directory, or a hub id when online") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if not encoder_decoder:
        tokenizer.padding_side = "left"  # a decoder continues from the prompt's last token
    model.eval()
    return tokenizer, model, encoder_decoder


@dataclass
class GenerationStats:
    generated: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count

    def as_dict(self) -> dict[str, Any]:
        return {"generated": self.generated, "kept": self.kept, "dropped": dict(sorted(self.dropped.items()))}


@dataclass
class LanguageModelGeneration:
    """Asks the generator for `tries` candidates per wanted variant and keeps those the filter accepts."""

    model_name: str
    mode: str = "paraphrase"
    filter_model: str | None = None
    min_confidence: float = 0.5
    examples_per_prompt: int = 3
    max_new_tokens: int = 48
    temperature: float = 0.9
    top_p: float = 0.95
    batch_size: int = 16
    tries: int = 3
    name: str = "generation"
    needs_labels: bool = True
    label_filter: LabelFilter | None = None  # set to use a given filter (tests, the Python API)
    stats: GenerationStats = field(default_factory=GenerationStats)
    _loaded: tuple[Any, Any, bool] | None = field(default=None, repr=False)

    def augment(self, texts: list[str], counts: list[int], rng: random.Random,
                labels: Sequence[Any] | None = None) -> list[list[str]]:
        if labels is None:
            raise TuneforgeError("generation needs each text's label (for its prompt and the label filter)",
                             fix="give the data a label column (data.label_column)")
        names = [str(label) for label in labels]
        accept = self.label_filter or (run_filter(self.filter_model) if self.filter_model
                                       else fit_default_filter(texts, names))
        by_label: dict[str, list[int]] = {}
        for index, label in enumerate(names):
            by_label.setdefault(label, []).append(index)
        jobs: list[tuple[int, str]] = []  # (original, prompt), one per candidate
        tokenizer, model, encoder_decoder = self._model()
        for index, count in enumerate(counts):
            pool = [i for i in by_label[names[index]] if i != index] or [index]
            for _ in range(count * self.tries):
                shown = [texts[i] for i in rng.sample(pool, min(self.examples_per_prompt, len(pool)))] \
                    if self.mode == "label_conditioned" else []
                jobs.append((index, prompt_for(self.mode, encoder_decoder, texts[index], names[index],
                                               shown or [texts[index]])))
        candidates = self._generate([prompt for _, prompt in jobs], rng)
        self.stats.generated += len(candidates)
        verdicts = accept([c for c in candidates if c])
        verdict_of = iter(verdicts)
        results: list[list[str]] = [[] for _ in texts]
        seen = {normalise(text) for text in texts}
        for (index, _), candidate in zip(jobs, candidates, strict=True):
            if not candidate:
                self.stats.dropped["empty"] += 1
                continue
            predicted, confidence = next(verdict_of)
            key = normalise(candidate)
            if predicted != names[index]:
                self.stats.dropped["off_label"] += 1
            elif confidence < self.min_confidence:
                self.stats.dropped["low_confidence"] += 1
            elif key in seen:
                self.stats.dropped["duplicate"] += 1
            elif len(results[index]) >= counts[index]:
                self.stats.dropped["surplus"] += 1
            else:
                seen.add(key)
                results[index].append(candidate)
                self.stats.kept += 1
        return results

    def _model(self) -> tuple[Any, Any, bool]:
        if self._loaded is None:
            self._loaded = load_generator(self.model_name)
        return self._loaded

    def _generate(self, prompts: list[str], rng: random.Random) -> list[str]:
        import torch

        tokenizer, model, encoder_decoder = self._model()
        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = tokenizer(prompts[start:start + self.batch_size], return_tensors="pt", padding=True,
                              truncation=True, max_length=MAX_PROMPT_TOKENS)
            batch.pop("token_type_ids", None)
            # Sampling draws from torch's generator: seed it from `rng` inside fork_rng, so the same augment
            # seed gives the same generations without touching the caller's random state.
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(rng.randrange(2**31))
                generated = model.generate(**batch, do_sample=True, temperature=self.temperature, top_p=self.top_p,
                                           max_new_tokens=self.max_new_tokens,
                                           pad_token_id=tokenizer.pad_token_id)
            if not encoder_decoder:
                generated = generated[:, batch["input_ids"].shape[1]:]
            out += [first_line(text) for text in tokenizer.batch_decode(generated, skip_special_tokens=True)]
        return out
