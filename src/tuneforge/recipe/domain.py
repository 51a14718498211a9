"""Domain adaptation: text rules and vocabulary (domain) and continued pretraining (pretrain)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.recipe.section import Section


class DomainRuleSpec(Section):
    pattern: str = Field(description="Regular expression (Python `re` syntax).")
    replacement: str = Field("", description="Replacement text; \\1 inserts the first group.")
    ignore_case: bool = Field(False, description="Match regardless of case.")


class DomainSpec(Section):
    rule_packs: list[Literal["legal", "medical", "financial", "dates"]] = Field(
        default_factory=list,
        description="Built-in preprocessing rule packs applied to every text at training and prediction time: legal "
        "(citations, section signs, case numbers), medical (de-identifies names/dates/IDs, expands clinical "
        "abbreviations, spaces units), financial (currencies, amounts, tickers, dates), dates.",
    )
    rules: list[DomainRuleSpec] = Field(
        default_factory=list, description="Your own rules, applied after the packs: [{pattern, replacement}]."
    )
    functions: list[str] = Field(
        default_factory=list,
        description="Dotted paths of functions text -> text applied last (e.g. transliteration), such as "
        "mypackage.rules:transliterate; they must be importable wherever the model is used.",
    )
    unicode_normalization: Literal["none", "NFC", "NFKC", "NFKC_casefold"] = Field(
        "none", description="Unicode normalisation before the rules (NFKC folds full-width and compatibility forms)."
    )
    extend_vocabulary: bool = Field(
        False,
        description="Add frequent domain words that the tokenizer splits into many pieces as whole tokens, their "
        "embeddings starting from the mean of their old pieces.",
    )
    max_new_tokens: int = Field(200, ge=1, description="extend_vocabulary: most words added.")
    min_term_frequency: int = Field(3, ge=1, description="extend_vocabulary: a word must occur this often.")
    min_term_pieces: int = Field(3, ge=2, description="extend_vocabulary: a word must split into this many pieces.")

    @property
    def has_rules(self) -> bool:
        return bool(self.rule_packs or self.rules or self.functions or self.unicode_normalization != "none")


class PretrainSpec(Section):
    corpus: str | None = Field(
        None, description="Unlabelled domain text (CSV/TSV/JSONL/Parquet with a text column, or a .txt file with "
        "one text per line) for continued pretraining; needs train.stages: [pretrain, finetune]."
    )
    text_column: str = Field("text", description="Column of the corpus holding the text.")
    objective: Literal["auto", "mlm", "clm", "tsdae", "simcse"] = Field(
        "auto", description="auto: the model's own language-model objective when it ships that head (masked-LM for "
        "encoders, causal-LM for decoders), else tsdae for sentence encoders without one (the bundled minilm); "
        "tsdae: denoising auto-encoder (the encoder's sentence embedding must let a decoder rebuild the text from "
        "a copy with words deleted); simcse: two dropout views of each text must embed closer than other texts."
    )
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="Share of tokens masked (mlm).")
    epochs: float = Field(1.0, gt=0, description="Passes over the corpus.")
    max_steps: int = Field(0, ge=0, description="Stop after this many steps; 0 means use epochs.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate of continued pretraining.")
    batch_size: int = Field(16, ge=1, description="Texts per step.")
