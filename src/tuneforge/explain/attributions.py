"""Token attributions: how much each token pushed the model towards one class.

Three methods with different trade-offs, one result type:
- Integrated Gradients (captum): exact path integral of gradients from a neutral input; needs gradients,
  gives one score per word piece and a convergence delta that says how well the integral was approximated;
- SHAP (partition explainer over a text masker): model-agnostic Shapley values over word pieces;
- LIME: a local linear model over whole words; model-agnostic, cheapest to read, noisiest.
Scores are signed: positive supports the explained class, negative speaks against it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from tuneforge.explain.inputs import (
    encode,
    probability_function,
    require_classification,
    resolve_target,
    special_mask,
    temperature,
    visible_text,
)


@dataclass(frozen=True)
class Attribution:
    """One method's scores for one text: `tokens[i]` got `scores[i]` towards class `label`.

    Special tokens ([CLS], [SEP]) are left out. `level` is "token" (word pieces, as the tokenizer splits
    them) or "word" (LIME). `delta` is Integrated Gradients' convergence delta: sum of scores minus the
    change in probability between baseline and input; near zero means enough integration steps.
    """

    method: str
    tokens: list[str]
    scores: list[float]
    label: str
    probability: float
    level: str = "token"
    delta: float | None = None

    def top(self, count: int = 5) -> list[tuple[str, float]]:
        """The `count` most influential tokens, by absolute score."""
        order = sorted(range(len(self.scores)), key=lambda i: -abs(self.scores[i]))
        return [(self.tokens[i], self.scores[i]) for i in order[:count]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TokenImportance(NamedTuple):
    token: str
    mean_score: float
    count: int


def integrated_gradients(predictor: Any, text: str, label: str | None = None, pair: str | None = None,
                         n_steps: int = 50, baseline: str = "pad", internal_batch_size: int = 16) -> Attribution:
    """Integrated Gradients of the class probability w.r.t. the word embeddings.

    The baseline keeps [CLS]/[SEP] (so the model still sees a well-formed input) and replaces every other
    token by [PAD] (`baseline="pad"`) or [MASK] (`baseline="mask"`): "no words" rather than "no input".
    """
    from captum.attr import LayerIntegratedGradients

    target = resolve_target(predictor, text, pair, label, "ig")
    model, tokenizer = predictor.model, predictor.tokenizer
    encoded = encode(predictor, text, pair)
    input_ids = encoded["input_ids"]
    special = special_mask(tokenizer, input_ids[0].tolist())
    fill = tokenizer.mask_token_id if baseline == "mask" else tokenizer.pad_token_id
    if fill is None:
        raise ValueError(f"the tokenizer has no {baseline} token to build the baseline from")
    keep = torch.tensor(special, device=input_ids.device).unsqueeze(0)
    baseline_ids = torch.where(keep, input_ids, torch.full_like(input_ids, fill))
    names = [name for name in encoded if name != "input_ids"]
    scale = temperature(predictor)

    def forward(ids: torch.Tensor, *others: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=ids, **dict(zip(names, others, strict=True))).logits
        return torch.softmax(logits.double() / scale, dim=-1)

    explainer = LayerIntegratedGradients(forward, model.get_input_embeddings())
    attributions, delta = explainer.attribute(
        input_ids, baselines=baseline_ids, additional_forward_args=tuple(encoded[n] for n in names),
        target=target.index, n_steps=n_steps, internal_batch_size=internal_batch_size,
        return_convergence_delta=True,
    )
    per_token = attributions.sum(dim=-1)[0].detach().float().cpu().numpy()
    tokens = tokenizer.convert_ids_to_tokens(input_ids[0].tolist())
    kept = [i for i, is_special in enumerate(special) if not is_special]
    return Attribution("ig", [tokens[i] for i in kept], [float(per_token[i]) for i in kept], target.label,
                       target.probability, delta=float(delta.reshape(-1)[0]))


def shap_attribution(predictor: Any, text: str, label: str | None = None, pair: str | None = None,
                     max_evals: int = 200, batch_size: int = 64) -> Attribution:
    """Shapley values over word pieces from SHAP's partition explainer with the run's tokenizer as masker.

    `max_evals` bounds the model calls per text; the partition explainer needs roughly 2·tokens calls for a
    first estimate, so a few hundred suffice for sentence-length texts. `batch_size` masked texts go through
    the model at once (SHAP's default of 5 leaves most of each forward pass idle).
    """
    import shap

    require_classification(predictor, "shap")
    text = visible_text(predictor, text, pair)
    target = resolve_target(predictor, text, pair, label, "shap")
    tokenizer = predictor.tokenizer
    input_ids = tokenizer(text)["input_ids"]
    special = special_mask(tokenizer, input_ids)
    if all(special):
        return Attribution("shap", [], [], target.label, target.probability)
    explainer = shap.Explainer(probability_function(predictor, pair), shap.maskers.Text(tokenizer),
                               output_names=list(predictor.labels))
    explanation = explainer([text], max_evals=max(max_evals, 2 * len(input_ids) + 1), batch_size=batch_size,
                            silent=True)
    values = np.asarray(explanation.values[0])[:, target.index]
    if len(values) == len(input_ids):
        tokens = tokenizer.convert_ids_to_tokens(input_ids)
    else:  # SHAP split the text differently; fall back to its own spans
        tokens = [str(span).strip() for span in explanation.data[0]]
        special = [not token for token in tokens]
    kept = [i for i, is_special in enumerate(special) if not is_special]
    return Attribution("shap", [tokens[i] for i in kept], [float(values[i]) for i in kept], target.label,
                       target.probability)


def lime_attribution(predictor: Any, text: str, label: str | None = None, pair: str | None = None,
                     num_samples: int = 300, seed: int = 0) -> Attribution:
    """LIME over words in reading order (each occurrence its own feature); removed words become [MASK]."""
    from lime.lime_text import IndexedString, LimeTextExplainer

    require_classification(predictor, "lime")
    text = visible_text(predictor, text, pair)
    target = resolve_target(predictor, text, pair, label, "lime")
    mask = predictor.tokenizer.mask_token or ""
    explainer = LimeTextExplainer(class_names=list(predictor.labels), bow=False, mask_string=mask,
                                  random_state=seed)
    indexed = IndexedString(text, bow=False, mask_string=mask)
    count = indexed.num_words()
    if count == 0:
        return Attribution("lime", [], [], target.label, target.probability, level="word")
    explanation = explainer.explain_instance(text, probability_function(predictor, pair), labels=(target.index,),
                                             num_features=count, num_samples=num_samples)
    scores = [0.0] * count
    for feature, weight in explanation.as_map()[target.index]:
        scores[int(feature)] = float(weight)
    tokens = [str(indexed.word(i)) for i in range(count)]
    return Attribution("lime", tokens, scores, target.label, target.probability, level="word")


def global_token_importance(attributions: Sequence[Attribution], top: int | None = 20, min_count: int = 1
                            ) -> dict[str, list[TokenImportance]]:
    """Per class, the tokens that pushed hardest towards it on average over many texts.

    Tokens are grouped by the class each attribution explains and ranked by mean score (signed, so the top
    of each list are the tokens that support the class; a token that mostly speaks against it sinks).
    `min_count` drops tokens seen too rarely for their mean to mean much. Mix only one method's results:
    the methods' scores live on different scales.
    """
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for attribution in attributions:
        for token, score in zip(attribution.tokens, attribution.scores, strict=True):
            sums[attribution.label][token].append(score)
    result: dict[str, list[TokenImportance]] = {}
    for label in sorted(sums):
        ranked = sorted((TokenImportance(token, float(np.mean(scores)), len(scores))
                         for token, scores in sums[label].items() if len(scores) >= min_count),
                        key=lambda item: (-item.mean_score, item.token))
        result[label] = ranked[:top] if top is not None else ranked
    return result
