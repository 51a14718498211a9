"""The augment section: the augmenters applied to the training split and their options."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from tuneforge.recipe.section import Section

AugmentMethod = Literal["synonym", "eda", "shuffle", "back_translation", "generation", "contextual"]
# Which options belong to which method, so an option given to the wrong method is an error, not ignored.
AUGMENT_OPTIONS = {
    "synonym": ("fraction", "wordnet_dir"),
    "eda": ("alpha_sr", "alpha_ri", "alpha_rs", "alpha_rd", "wordnet_dir"),
    "shuffle": ("words",),
    "back_translation": ("pivots", "source_language", "models", "batch_size", "timeout"),
    "generation": ("model", "mode", "filter_model", "min_confidence", "examples_per_prompt", "max_new_tokens",
                   "temperature", "top_p", "batch_size", "tries"),
    "contextual": ("model", "fraction", "top_k", "batch_size"),
}


class AugmentMethodSpec(Section):
    method: AugmentMethod = Field(description="The augmenter.")
    ratio: float = Field(
        1.0, gt=0, le=20, description="New examples per original; a fraction augments that share of the rows."
    )
    fraction: float = Field(
        0.15, gt=0, le=1, description="synonym, contextual: share of the eligible words replaced (at least one)."
    )
    alpha_sr: float = Field(0.1, ge=0, le=1, description="eda: share of words replaced by synonyms (0: off).")
    alpha_ri: float = Field(0.1, ge=0, le=1, description="eda: share of words inserted as synonyms (0: off).")
    alpha_rs: float = Field(0.1, ge=0, le=1, description="eda: share of words swapped (0: off).")
    alpha_rd: float = Field(0.1, ge=0, le=1, description="eda: probability of deleting each word (0: off).")
    wordnet_dir: str | None = Field(None, description="synonym, eda: WordNet dict folder (default: the installed one).")
    words: bool = Field(False, description="shuffle: also shuffle the words inside each sentence.")
    pivots: list[str] = Field(
        default_factory=lambda: ["spa"], description="back_translation: pivot languages, one per variant."
    )
    source_language: str = Field("eng", description="back_translation: language of the texts (Apertium code).")
    models: dict[str, list[str]] = Field(
        default_factory=dict,
        description="back_translation: {pivot: [to-pivot model, back model]} Transformers translation models; "
        "pivots not listed go through Apertium.",
    )
    batch_size: int = Field(64, ge=1, description="back_translation, generation, contextual: texts per model call.")
    timeout: float = Field(120.0, gt=0, description="back_translation: seconds one batch may take.")
    model: str | None = Field(
        None, description="generation: the causal or seq2seq generator (hub id, local folder or run directory); "
        "contextual: a masked language model (with an MLM head).")
    mode: Literal["paraphrase", "label_conditioned"] = Field(
        "paraphrase", description="generation: rewrite each original (paraphrase), or write new examples from the "
        "label and a few examples of it (label_conditioned).")
    filter_model: str | None = Field(
        None, description="generation: a tuneforge run directory whose classifier must agree with the label of a "
        "generated text; empty: a TF-IDF + logistic-regression classifier fitted on the training split.")
    min_confidence: float = Field(
        0.5, ge=0, le=1, description="generation: keep a generated text only if the filter predicts its label with "
        "at least this probability.")
    examples_per_prompt: int = Field(3, ge=0, le=20, description="generation, label_conditioned: same-label "
                                     "examples shown in each prompt.")
    max_new_tokens: int = Field(48, ge=1, description="generation: most tokens generated per text.")
    temperature: float = Field(0.9, gt=0, description="generation: sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="generation: nucleus-sampling share of probability mass.")
    tries: int = Field(3, ge=1, le=20, description="generation: candidates sampled per wanted variant (the filter "
                       "and de-duplication keep the first that pass).")
    top_k: int = Field(10, ge=1, description="contextual: the masked LM's best tokens a replacement is drawn from.")

    @model_serializer(mode="wrap")
    def _own_options_only(self, handler: Any) -> dict[str, Any]:
        """A saved recipe lists this method's options only, so it loads again under the check below."""
        own = {"method", "ratio", *AUGMENT_OPTIONS[self.method]}
        return {key: value for key, value in handler(self).items() if key in own}

    @model_validator(mode="after")
    def _options_fit_method(self) -> AugmentMethodSpec:
        own = set(AUGMENT_OPTIONS[self.method])
        for name in sorted(self.model_fields_set - own - {"method", "ratio"}):
            owners = [m for m, options in AUGMENT_OPTIONS.items() if name in options]
            raise ValueError(f"{name} is an option of {' and '.join(owners)}, not of {self.method}; remove it "
                             "from this method")
        if self.method == "eda" and not any((self.alpha_sr, self.alpha_ri, self.alpha_rs, self.alpha_rd)):
            raise ValueError("eda with every alpha at 0 changes nothing; give at least one of alpha_sr, alpha_ri, "
                             "alpha_rs, alpha_rd a value above 0")
        if self.method in ("generation", "contextual") and not self.model:
            kind = "a causal or sequence-to-sequence language model" if self.method == "generation" else \
                "a masked language model (e.g. a BERT with its MLM head)"
            raise ValueError(f"{self.method} needs model: {kind}, as a local folder, run directory or hub id")
        if self.method == "back_translation":
            if not self.pivots or len(set(self.pivots)) != len(self.pivots):
                raise ValueError("pivots must name at least one language, each once, e.g. [spa]")
            if self.ratio > len(self.pivots):
                raise ValueError(f"back_translation gives one variant per pivot, so ratio {self.ratio:g} needs at "
                                 f"least {int(-(-self.ratio // 1))} pivots; add pivots or lower the ratio")
            for pivot, names in self.models.items():
                if pivot not in self.pivots or len(names) != 2:
                    raise ValueError(f"models.{pivot} must be a pivot listed in pivots with two model names, "
                                     "[to-pivot model, back model]")
        return self


class AugmentSpec(Section):
    methods: list[AugmentMethodSpec] = Field(
        default_factory=list,
        description="Augmenters applied to the training split, e.g. [{method: synonym, ratio: 1}]; each item takes "
        "method (synonym, eda, shuffle, back_translation, generation, contextual), ratio and that method's options "
        "(see the README). "
        "Empty: no augmentation.",
    )
    seed: int = Field(0, description="Seed of every augmenter, so the same data always gets the same variants.")

    @field_validator("methods")
    @classmethod
    def _each_method_once(cls, value: list[AugmentMethodSpec]) -> list[AugmentMethodSpec]:
        names = [spec.method for spec in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} is listed more than once; list each method once (raise its "
                             "ratio for more variants)")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.methods)
