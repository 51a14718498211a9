"""Domain adaptation before fine-tuning: preprocessing rules, vocabulary extension, continued pretraining.

Order matters: rules first (the vocabulary is mined from, and the corpus pretrained on, text as the model will
see it), then new words (so continued pretraining trains their embeddings), then pretraining, whose output
becomes the base the task head is put on. Pretraining is the model's own language-model objective when it ships
that head (train/pretraining.py), or TSDAE / SimCSE for sentence encoders without one (train/sentence_adaptation.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from tuneforge import artifacts
from tuneforge.data.domain_rules import TextRules, rules_from_recipe, write_rules
from tuneforge.models.loading import load_tokenizer
from tuneforge.models.resolve import ResolvedModel, resolve_model
from tuneforge.models.vocabulary import extend_vocabulary, initialise_embeddings
from tuneforge.recipe import Recipe
from tuneforge.train.pretraining import FINISHED, continue_pretraining, read_corpus
from tuneforge.train.sentence_adaptation import SENTENCE_OBJECTIVES, adapt_sentence_encoder, choose_objective

logger = logging.getLogger(__name__)

PRETRAINED_DIR = "pretrained"
VOCABULARY_FILE = "vocabulary.json"


@dataclass
class DomainSetup:
    resolved: ResolvedModel
    tokenizer: PreTrainedTokenizerBase
    rules: TextRules | None = None
    new_pieces: dict[str, list[int]] = field(default_factory=dict)  # words added, not yet in the model's embeddings
    report: dict[str, Any] = field(default_factory=dict)

    def resize(self, model: Any) -> None:
        """Give the freshly loaded task model the added words (a pretrained base already has them)."""
        if self.new_pieces:
            initialise_embeddings(model, self.tokenizer, self.new_pieces)


def adapt_to_domain(recipe: Recipe, run_dir: Path, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase,
                    train_texts: Sequence[str], use_cpu: bool = True) -> DomainSetup:
    """Apply the recipe's domain section; with nothing switched on, the base model and tokenizer pass through."""
    spec = recipe.domain
    rules = rules_from_recipe(recipe) if spec.has_rules else None
    setup = DomainSetup(resolved=resolved, tokenizer=tokenizer, rules=rules)
    if rules is not None:
        write_rules(run_dir, rules)
        setup.report["rules"] = {"packs": list(rules.packs), "rules": len(rules.rules),
                                 "functions": list(rules.functions), "normalization": rules.normalization}
    texts = rules.apply(train_texts) if rules is not None else list(train_texts)

    pretrained = Path(run_dir) / PRETRAINED_DIR
    if "pretrain" in recipe.train.stages and (pretrained / FINISHED).is_file():
        # A resumed run: the adapted base exists already (written whole or not at all), so reuse it.
        setup.report["pretraining"] = json.loads((pretrained / FINISHED).read_text(encoding="utf-8"))
        vocabulary = pretrained / VOCABULARY_FILE
        if vocabulary.is_file():
            setup.report["vocabulary"] = json.loads(vocabulary.read_text(encoding="utf-8"))
        return _switch_base(setup, recipe, pretrained)

    corpus: list[str] = []
    if "pretrain" in recipe.train.stages:
        corpus = read_corpus(recipe.pretrain.corpus or "", recipe.pretrain.text_column, recipe.data.cache_dir)
    if spec.extend_vocabulary:  # words of the labelled data and of the domain corpus alike
        texts_only = [t for t in texts if isinstance(t, str)] + (rules.apply(corpus) if rules is not None else corpus)
        setup.new_pieces, report = extend_vocabulary(tokenizer, texts_only, spec.max_new_tokens,
                                                     spec.min_term_frequency, spec.min_term_pieces)
        setup.report["vocabulary"] = report.to_dict()
    if "pretrain" in recipe.train.stages:
        objective, warning = choose_objective(recipe, resolved)
        if warning:
            logger.warning(warning)
        if objective in SENTENCE_OBJECTIVES:
            report = adapt_sentence_encoder(recipe, resolved, tokenizer, setup.new_pieces, pretrained, objective,
                                            corpus, rules, use_cpu=use_cpu)
        else:
            report = continue_pretraining(recipe, resolved, tokenizer, setup.new_pieces, pretrained, rules,
                                          use_cpu=use_cpu, texts=corpus)
        if warning:  # kept with the adapted base, so a resumed run still shows it
            report["warning"] = warning
            artifacts.write_json(pretrained / FINISHED, report)
        setup.report["pretraining"] = report
        setup.new_pieces = {}  # the saved base already has the words' embeddings, trained
        if "vocabulary" in setup.report:
            artifacts.write_json(pretrained / VOCABULARY_FILE, setup.report["vocabulary"])
        return _switch_base(setup, recipe, pretrained)
    return setup


def _switch_base(setup: DomainSetup, recipe: Recipe, folder: Path) -> DomainSetup:
    setup.resolved = resolve_model(str(folder))
    setup.tokenizer = load_tokenizer(recipe.model.model_copy(update={"revision": None}), setup.resolved)
    return setup

