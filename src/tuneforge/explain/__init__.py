"""Why a fine-tuned model predicted what it did: attention maps and token attributions.

Every method answers the same question for one text (which tokens pushed the model towards the class it
picked, or towards a class you name) and returns the same `Attribution`, so the CLI, the HTML rendering and
the aggregation over many texts need not know which method produced the scores. Heavy libraries (captum,
shap, lime, matplotlib) are imported only when their method runs.
"""

from tuneforge.explain.attention import AttentionMaps, attention_maps, attention_rollout, rollout_attribution
from tuneforge.explain.attributions import (
    Attribution,
    TokenImportance,
    global_token_importance,
    integrated_gradients,
    lime_attribution,
    shap_attribution,
)
from tuneforge.explain.pipeline import ExplainSettings, TextExplanation, explain_texts, write_explanations

__all__ = [
    "AttentionMaps",
    "Attribution",
    "ExplainSettings",
    "TextExplanation",
    "TokenImportance",
    "attention_maps",
    "attention_rollout",
    "explain_texts",
    "global_token_importance",
    "integrated_gradients",
    "lime_attribution",
    "rollout_attribution",
    "shap_attribution",
    "write_explanations",
]
