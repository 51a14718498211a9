"""How generative runs write text (generation) and the causal-LM options (lm)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.recipe.section import Section


class GenerationSpec(Section):
    """How a generative run (seq2seq, causal-lm) writes text at evaluation and predict time."""

    max_new_tokens: int = Field(64, ge=1, description="Most tokens generated per input.")
    num_beams: int = Field(1, ge=1, description="Beam-search width; 1 is greedy (or sampling with do_sample).")
    do_sample: bool = Field(False, description="Sample from the distribution instead of taking the best token.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (do_sample).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: smallest set of tokens with this much "
                         "probability (do_sample).")
    top_k: int = Field(50, ge=0, description="Sample among the k most likely tokens; 0 turns it off (do_sample).")
    repetition_penalty: float = Field(1.0, gt=0, description="Above 1 discourages repeating tokens.")
    no_repeat_ngram_size: int = Field(0, ge=0, description="Never repeat an n-gram of this size; 0: off.")
    eval_examples: int = Field(
        200, ge=0, description="Validation and test rows generated for the text metrics after training (0: all); "
        "generation is slow, the loss is still measured on every row.")
    batch_size: int = Field(16, ge=1, description="Inputs per generation call.")
    seed: int = Field(0, description="Seed of sampling, so the same input gives the same text.")


class LanguageModelSpec(Section):
    """causal-lm options: packing, chat template, label-as-text classification."""

    packing: bool = Field(
        False, description="Put each batch's examples end to end in one row without padding; positions restart "
        "per example so attention never crosses examples (needs a model that reads position_ids: GPT-2, Llama, "
        "Mistral, Qwen ...). Faster when lengths vary.")
    chat_template: str | None = Field(
        None, description="Jinja chat template used instead of the tokenizer's; empty: the tokenizer's, or a plain "
        "'<|role|>' template with an end-of-sequence token after every assistant turn when it has none.")
    system_prompt: str | None = Field(None, description="System message put before every chat (messages_column).")
    classify: bool = Field(
        False, description="Classification as text: the prompt is text_column in prompt_template, the response is "
        "the label name from label_column; metrics are accuracy and macro-F1.")
    prompt_template: str = Field(
        "Text: {text} Label:", description="classify: how the text becomes a prompt ({text} is replaced).")
    label_scoring: Literal["likelihood", "generate"] = Field(
        "likelihood", description="classify: pick the label whose text is most likely after the prompt, or "
        "generate and map the text to the closest label.")
