"""Few-shot contrastive training (SetFit's recipe) of a classifier's encoder, before its ordinary fine-tuning.

With tens of labelled rows per class a fresh head and a few gradient steps learn little; SetFit (Tunstall et al.,
2022) instead first trains the encoder on pairs of rows, same label close and different label apart, which gives
many training signals from few rows, then fits a logistic regression on the embeddings. Here that happens inside
the ordinary classifier, so the run directory stays a plain classification run that `tuneforge.load`, serving
and export read as any other:

1. A SentenceTransformer wraps the classifier's own encoder (the same module object, so what it learns is what the
   classifier starts from) with mean pooling, and sentence-transformers' trainer trains it on pairs
   (CosineSimilarityLoss or ContrastiveLoss) or on the rows themselves (BatchHardTripletLoss).
2. A bridge: Transformers' BERT-style classifiers do not read the mean-pooled embedding but the first token
   through their pooler (or a head layer), which the contrastive stage barely shaped. A short distillation
   teaches that feature path to reproduce the mean-pooled embeddings (cosine), on the training texts and copies
   with words dropped, so the head reads what SetFit's head would.
3. The head's output layer starts from a logistic regression fitted on the features that layer reads, so the head
   starts where SetFit's head ends instead of at random.
4. The ordinary fine-tune (train.epochs) then trains head and encoder together briefly, rather than freezing the
   head at the regression: the bridge is approximate, and a short end-to-end pass on the labels closes the gap.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import torch

from tuneforge import artifacts
from tuneforge.data.prepare import LABEL_FIELD
from tuneforge.errors import TuneforgeError
from tuneforge.models.heads import head_modules
from tuneforge.models.resolve import ResolvedModel
from tuneforge.recipe import ContrastiveSpec, Recipe

if TYPE_CHECKING:  # the pipelines import this module
    from tuneforge.train.pipelines.base import RunState

logger = logging.getLogger(__name__)

REPORT_FILE = "contrastive.json"
# Callbacks the contrastive stage's trainer runs besides its own: `tuneforge auto` stops a trial here too when its
# budget is spent. The skeleton's callbacks reach only the fine-tune's Trainer, which starts after this stage.
STAGE_CALLBACKS: ContextVar[tuple[Any, ...]] = ContextVar("contrastive_stage_callbacks", default=())

POOLING = "mean"  # SetFit's pooling, and the one sentence encoders such as the bundled minilm were trained with


def make_pairs(texts: Sequence[str], labels: Sequence[int], iterations: int, max_pairs: int, seed: int
               ) -> datasets.Dataset:
    """SetFit's pair generation: per row and iteration one positive (same label) and one negative pair.

    Written here because sentence-transformers trains on pairs but does not make them from class labels, and the
    setfit package pins older sentence-transformers releases.
    """
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(int(label), []).append(index)
    first: list[str] = []
    second: list[str] = []
    score: list[float] = []
    order = list(range(len(texts)))
    several = len(by_label) > 1
    for _ in range(iterations):
        rng.shuffle(order)
        for index in order:
            label = int(labels[index])
            same = [other for other in by_label[label] if other != index] or [index]
            first.append(texts[index])
            second.append(texts[rng.choice(same)])
            score.append(1.0)
            if several:
                other = rng.randrange(len(texts))
                while int(labels[other]) == label:  # a few draws unless one class is nearly all the data
                    other = rng.randrange(len(texts))
                first.append(texts[index])
                second.append(texts[other])
                score.append(0.0)
            if len(first) >= max_pairs:
                break
        if len(first) >= max_pairs:
            break
    return datasets.Dataset.from_dict({"sentence1": first[:max_pairs], "sentence2": second[:max_pairs],
                                       "label": score[:max_pairs]})


def _sentence_model(model: Any, tokenizer: Any, resolved: ResolvedModel, recipe: Recipe, device: str) -> Any:
    """A SentenceTransformer over the classifier's own encoder module (shared, not copied)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    encoder = getattr(model, model.base_model_prefix, None)
    if encoder is None:
        raise TuneforgeError(f"the model {type(model).__name__} exposes no encoder for contrastive training",
                             fix="use train.method: standard with this model")
    module = Transformer(str(resolved.path), max_seq_length=recipe.train.max_length,
                         model_kwargs={"trust_remote_code": recipe.model.trust_remote_code,
                                       "local_files_only": resolved.offline},
                         processor_kwargs={"local_files_only": resolved.offline})
    if type(module.model) is not type(encoder):
        raise TuneforgeError(f"sentence-transformers loads '{resolved.requested}' as {type(module.model).__name__}, "
                             f"but the classifier's encoder is {type(encoder).__name__}",
                             fix="use train.method: standard with this model")
    # The run's tokenizer (new domain words included) and the classifier's encoder replace what was loaded.
    module.model = encoder
    module.processor = tokenizer
    pooling = Pooling(module.get_embedding_dimension(), POOLING)
    return SentenceTransformer(modules=[module, pooling], device=device)


def _loss(spec: ContrastiveSpec, sentence_model: Any) -> Any:
    from sentence_transformers.sentence_transformer import losses

    if spec.loss == "batch_hard":
        return losses.BatchHardTripletLoss(sentence_model)
    if spec.loss == "contrastive":
        return losses.ContrastiveLoss(sentence_model)
    return losses.CosineSimilarityLoss(sentence_model)


def train_encoder(model: Any, tokenizer: Any, resolved: ResolvedModel, recipe: Recipe, texts: Sequence[str],
                  labels: Sequence[int], use_cpu: bool) -> dict[str, Any]:
    """Train the classifier's encoder contrastively in place; returns what was done, for metrics.json."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    spec = recipe.train.contrastive
    device = "cpu" if use_cpu else str(next(model.parameters()).device)
    sentence_model = _sentence_model(model, tokenizer, resolved, recipe, device)
    if spec.loss == "batch_hard":
        train = datasets.Dataset.from_dict({"text": list(texts), "label": [int(v) for v in labels]})
        sampler = BatchSamplers.GROUP_BY_LABEL  # every batch holds several rows of a class, so triplets exist
    else:
        train = make_pairs(texts, labels, spec.iterations, spec.max_pairs, recipe.train.seed)
        sampler = BatchSamplers.BATCH_SAMPLER
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tuneforge-contrastive-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch, num_train_epochs=spec.epochs, per_device_train_batch_size=spec.batch_size,
            learning_rate=spec.learning_rate, warmup_steps=0.1, seed=recipe.train.seed, use_cpu=use_cpu,
            batch_sampler=sampler, save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
            logging_strategy="no")
        trainer = SentenceTransformerTrainer(model=sentence_model, args=args, train_dataset=train,
                                             loss=_loss(spec, sentence_model), callbacks=list(STAGE_CALLBACKS.get()))
        result = trainer.train()
    return {"loss": spec.loss, "pooling": POOLING, "pairs" if spec.loss != "batch_hard" else "rows": len(train),
            "steps": result.global_step, "training_loss": round(float(result.training_loss), 4),
            "runtime_seconds": round(time.time() - started, 2)}


def output_layer(model: Any, num_labels: int) -> torch.nn.Linear:
    """The head's last linear layer, the one that writes the class logits."""
    found = [module for _, head in head_modules(model) for module in head.modules()
             if isinstance(module, torch.nn.Linear) and module.out_features == num_labels]
    if not found:
        raise TuneforgeError(f"no output layer with {num_labels} outputs found in {type(model).__name__}'s head",
                             fix="set train.contrastive.head_init: random")
    return found[-1]


@torch.no_grad()
def head_features(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = 32
                  ) -> np.ndarray:
    """What the output layer reads for each text (pooled, projected, after dropout in eval mode)."""
    layer = output_layer(model, model.config.num_labels)
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _module, inputs, _output: captured.append(inputs[0].detach()))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(device)
            model(**batch)
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured).float().cpu().numpy()


def _noisy_copies(texts: Sequence[str], copies: int, seed: int, drop: float = 0.3) -> list[str]:
    """Each text with a share of its words dropped (TSDAE's deletion noise), for more bridge examples."""
    rng = random.Random(seed)
    noisy = []
    for text in texts:
        words = text.split()
        for _ in range(copies):
            noisy.append(" ".join([word for word in words if rng.random() > drop] or words[:1]))
    return noisy


def _mean_embeddings(encoder: Any, tokenizer: Any, texts: Sequence[str], max_length: int, device: Any
                     ) -> torch.Tensor:
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt").to(device)
    hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def bridge(model: Any, tokenizer: Any, texts: Sequence[str], spec: ContrastiveSpec, max_length: int, seed: int,
           batch_size: int = 16) -> dict[str, Any]:
    """Step 2 of the module docstring. Hand-written: sentence-transformers distils into a SentenceTransformer's
    embedding, and the student here is the input of the classifier's output layer, which is not one."""
    encoder = getattr(model, model.base_model_prefix)
    device = next(model.parameters()).device
    examples = list(texts) + _noisy_copies(texts, 3, seed)
    was_training = model.training
    model.eval()  # no dropout: the features the head will read at prediction time
    with torch.no_grad():
        teacher = torch.cat([_mean_embeddings(encoder, tokenizer, examples[start:start + 64], max_length, device)
                             for start in range(0, len(examples), 64)])
    layer = output_layer(model, model.config.num_labels)
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _module, inputs, _output: captured.append(inputs[0]))
    trained = [param for param in model.parameters()
               if param.requires_grad and not any(param is own for own in layer.parameters())]
    optimizer = torch.optim.AdamW(trained, lr=spec.learning_rate)
    rng = random.Random(seed)
    order = list(range(len(examples)))

    def agreement() -> float:
        captured.clear()
        with torch.no_grad():
            for start in range(0, len(examples), 64):
                batch = tokenizer(examples[start:start + 64], padding=True, truncation=True, max_length=max_length,
                                  return_tensors="pt").to(device)
                model(**batch)
        features = torch.cat(captured)
        return float(torch.nn.functional.cosine_similarity(features, teacher).mean())

    before = agreement()
    try:
        for _ in range(spec.bridge_epochs):
            rng.shuffle(order)
            for start in range(0, len(order), batch_size):
                chosen = order[start:start + batch_size]
                batch = tokenizer([examples[i] for i in chosen], padding=True, truncation=True,
                                  max_length=max_length, return_tensors="pt").to(device)
                captured.clear()
                model(**batch)
                loss = 1 - torch.nn.functional.cosine_similarity(captured[0], teacher[chosen]).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        after = agreement()
    finally:
        hook.remove()
        model.train(was_training)
        optimizer.zero_grad(set_to_none=True)
    return {"bridge_examples": len(examples), "bridge_cosine_before": round(before, 4),
            "bridge_cosine_after": round(after, 4)}


@torch.no_grad()
def fit_head(model: Any, tokenizer: Any, texts: Sequence[str], labels: Sequence[int], max_length: int,
             seed: int) -> dict[str, Any]:
    """SetFit's logistic regression, fitted on the output layer's input and written into that layer."""
    from sklearn.linear_model import LogisticRegression

    features = head_features(model, tokenizer, texts, max_length)
    targets = np.asarray(labels, dtype=int)
    num_labels = model.config.num_labels
    regression = LogisticRegression(max_iter=2000, random_state=seed).fit(features, targets)
    weight = np.zeros((num_labels, features.shape[1]))
    bias = np.zeros(num_labels)
    classes = regression.classes_.astype(int)
    if len(classes) == 2:  # sklearn keeps one row for two classes: the logit difference, split evenly
        weight[classes[1]], bias[classes[1]] = regression.coef_[0] / 2, regression.intercept_[0] / 2
        weight[classes[0]], bias[classes[0]] = -regression.coef_[0] / 2, -regression.intercept_[0] / 2
    else:
        weight[classes], bias[classes] = regression.coef_, regression.intercept_
    layer = output_layer(model, num_labels)
    layer.weight.copy_(torch.as_tensor(weight, dtype=layer.weight.dtype))
    if layer.bias is not None:
        layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype))
    return {"head_init": "logistic", "head_train_accuracy": round(float(regression.score(features, targets)), 4)}


def contrastive_start(model: Any, tokenizer: Any, resolved: ResolvedModel, recipe: Recipe, texts: Sequence[str],
                      labels: Sequence[int], use_cpu: bool) -> dict[str, Any]:
    """Steps 1 to 3 of the module docstring on a freshly loaded classifier; returns metrics.json's record."""
    report = train_encoder(model, tokenizer, resolved, recipe, texts, labels, use_cpu)
    if recipe.train.contrastive.bridge_epochs:
        report.update(bridge(model, tokenizer, texts, recipe.train.contrastive, recipe.train.max_length,
                             recipe.train.seed))
    if recipe.train.contrastive.head_init == "logistic":
        report.update(fit_head(model, tokenizer, texts, labels, recipe.train.max_length, recipe.train.seed))
    else:
        report["head_init"] = "random"
    logger.info("contrastive stage: %s", report)
    return report


def contrastive_stage(state: RunState, model: Any) -> None:
    """The text pipeline's hook on its freshly loaded classifier (before PEFT or freezing, which the recipe
    refuses or leaves to the fine-tune). A resumed run's checkpoint already holds the trained weights."""
    report_path = state.layout.root / REPORT_FILE
    if state.checkpoint is not None:
        if report_path.is_file():
            state.extras["contrastive"] = json.loads(report_path.read_text(encoding="utf-8"))
        return
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise TuneforgeError("train.method contrastive runs in one process",
                             fix="start it without torchrun or --nproc (few-shot data needs no more)")
    recipe, domain = state.recipe, state.extras["domain"]
    texts = state.data.train[recipe.data.text_column]
    texts = domain.rules.apply(texts) if domain.rules is not None else list(texts)
    report = contrastive_start(model, state.tokenizer, domain.resolved, recipe, texts, state.data.train[LABEL_FIELD],
                               state.device.type == "cpu")
    artifacts.write_json(report_path, report)
    state.extras["contrastive"] = report
