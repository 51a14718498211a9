"""Does uncertainty sampling need fewer labels than random sampling? A simulated annotation loop on real data.

TweetEval emotion (4 classes; read from ../shared/data/tweeteval/emotion) plays the annotator: the training
tweets form the unlabelled pool, and a tweet's label is revealed only once a strategy selects it. Every run
starts from the same random seed set; each round, the selection code behind `tuneforge annotate select`
(`tuneforge.lifecycle.active_learning.select`) picks the next batch from the model's probabilities on the pool,
the labels come back, and the model is retrained and scored on the test split. Random sampling, the baseline,
runs side by side with the same seed sets.

The model is the bundled `minilm` encoder kept frozen (its mean-pooled sentence embeddings, computed once) with
a softmax head retrained each round (multinomial logistic regression): training only the head is what keeps
a dozen rounds x strategies x repeats within minutes on two cores. Full fine-tuning changes the absolute figures,
not the comparison being made.

    python bench/active_learning.py                        # embedding 2,500 tweets dominates the time
    python bench/active_learning.py --rounds 6 --repeats 1 # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "tweeteval" / "emotion"
STRATEGIES = ("random", "entropy", "margin", "diversity")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="TweetEval task folder")
    parser.add_argument("--pool-size", type=int, default=1500, help="pool tweets (a seeded sample of train)")
    parser.add_argument("--test-size", type=int, default=1000, help="test tweets (a seeded sample; 0 = all)")
    parser.add_argument("--seed-size", type=int, default=40, help="labelled tweets before the first round")
    parser.add_argument("--batch", type=int, default=40, help="labels added per round")
    parser.add_argument("--rounds", type=int, default=10, help="selection rounds")
    parser.add_argument("--repeats", type=int, default=3, help="seed sets averaged")
    parser.add_argument("--plot", type=Path, default=REPO_ROOT / "bench" / "results" / "active_learning.png")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def read_split(folder: Path, prefix: str) -> tuple[list[str], np.ndarray]:
    def lines(name: str) -> list[str]:
        text = (folder / name).read_text(encoding="utf-8")
        return (text[:-1] if text.endswith("\n") else text).split("\n")

    missing = [p for p in (folder / f"{prefix}_text.txt", folder / f"{prefix}_labels.txt") if not p.is_file()]
    if missing:
        sys.exit(f"error: TweetEval data not found ({', '.join(map(str, missing))}); pass --data")
    return lines(f"{prefix}_text.txt"), np.array([int(v) for v in lines(f"{prefix}_labels.txt")])


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """The bundled minilm's mean-pooled last layer: the sentence embedding it was trained to produce."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tuneforge.models.resolve import resolve_model

    path = resolve_model("minilm").path
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            encoded = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=64,
                                return_tensors="pt")
            hidden = model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            chunks.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(chunks)


class Oracle:
    """The annotator: holds the pool's labels and reveals one only when asked for it."""

    def __init__(self, labels: np.ndarray) -> None:
        self._labels = labels
        self.asked = 0

    def label(self, indices: list[int]) -> np.ndarray:
        self.asked += len(indices)
        return self._labels[indices]


def train_and_score(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> tuple[Any, float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    head = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    predicted = head.predict(x_test)
    return head, accuracy_score(y_test, predicted), f1_score(y_test, predicted, average="macro")


def simulate(strategy: str, pool_x: np.ndarray, oracle: Oracle, test_x: np.ndarray, test_y: np.ndarray,
             seed_indices: list[int], batch: int, rounds: int, seed: int) -> list[dict[str, float]]:
    from tuneforge.lifecycle.active_learning import select

    labelled = list(seed_indices)
    labels = list(oracle.label(labelled))
    curve = []
    for round_number in range(rounds + 1):
        head, accuracy, f1 = train_and_score(pool_x[labelled], np.array(labels), test_x, test_y)
        curve.append({"labels": len(labelled), "accuracy": accuracy, "f1_macro": f1})
        if round_number == rounds:
            break
        remaining = np.setdiff1d(np.arange(len(pool_x)), labelled)
        probabilities = np.zeros((len(remaining), len(np.unique(test_y))))
        probabilities[:, head.classes_] = head.predict_proba(pool_x[remaining])  # a class unseen so far gets 0
        chosen = select(probabilities, batch, strategy, embeddings=pool_x[remaining],
                        labelled_embeddings=pool_x[labelled], seed=seed * 1000 + round_number)
        new = [int(remaining[i]) for i in chosen.indices]
        labelled += new
        labels += list(oracle.label(new))
    return curve


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")]
        cpu = models[0] if models else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}


def plot(results: dict[str, list[dict[str, float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for strategy, curve in results.items():
        for axis, metric in zip(axes, ("accuracy", "f1_macro"), strict=True):
            axis.plot([p["labels"] for p in curve], [p[metric] for p in curve], marker="o", markersize=3,
                      label=strategy, linestyle="--" if strategy == "random" else "-")
    for axis, metric in zip(axes, ("test accuracy", "test macro-F1"), strict=True):
        axis.set_xlabel("labels used")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    train_texts, train_y = read_split(args.data, "train")
    test_texts, test_y = read_split(args.data, "test")
    if args.test_size:
        keep = np.random.default_rng(1).choice(len(test_texts), min(args.test_size, len(test_texts)), replace=False)
        test_texts, test_y = [test_texts[i] for i in keep], test_y[keep]
    rng = np.random.default_rng(0)
    pool = rng.choice(len(train_texts), min(args.pool_size, len(train_texts)), replace=False)
    embed_started = time.perf_counter()
    pool_x = embed([train_texts[i] for i in pool])
    test_x = embed(test_texts)
    embed_seconds = time.perf_counter() - embed_started
    pool_y = train_y[pool]
    per_strategy: dict[str, list[list[dict[str, float]]]] = {s: [] for s in STRATEGIES}
    seconds = dict.fromkeys(STRATEGIES, 0.0)
    for repeat in range(args.repeats):
        seed_set = np.random.default_rng(100 + repeat).choice(len(pool_x), args.seed_size, replace=False).tolist()
        for strategy in STRATEGIES:
            oracle = Oracle(pool_y)
            clock = time.perf_counter()
            per_strategy[strategy].append(simulate(strategy, pool_x, oracle, test_x, test_y, seed_set, args.batch,
                                                   args.rounds, repeat))
            seconds[strategy] += time.perf_counter() - clock
            assert oracle.asked == args.seed_size + args.batch * args.rounds
    mean = {s: [{"labels": runs[0][i]["labels"],
                 "accuracy": float(np.mean([r[i]["accuracy"] for r in runs])),
                 "f1_macro": float(np.mean([r[i]["f1_macro"] for r in runs]))} for i in range(args.rounds + 1)]
            for s, runs in per_strategy.items()}
    host = machine()
    _, full_accuracy, full_f1 = train_and_score(pool_x, pool_y, test_x, test_y)
    title = (f"TweetEval emotion: minilm (frozen) + softmax head, pool {len(pool_x)}, test {len(test_x)}, "
             f"mean of {args.repeats} seed sets")
    plot(mean, args.plot, title)
    print(title)
    print(f"machine: {host['cpu']}, {host['cores']} cores, torch {host['torch']} ({host['threads']} threads); "
          f"embeddings {embed_seconds:.0f} s, whole bench {time.perf_counter() - started:.0f} s")
    header = "| labels | " + " | ".join(f"{s} acc / F1" for s in STRATEGIES) + " |"
    print("\n" + header)
    print("|---:|" + "---:|" * len(STRATEGIES))
    for i in range(args.rounds + 1):
        cells = [f"{mean[s][i]['accuracy']:.3f} / {mean[s][i]['f1_macro']:.3f}" for s in STRATEGIES]
        print(f"| {mean['random'][i]['labels']} | " + " | ".join(cells) + " |")
    target = mean["random"][-1]["f1_macro"]
    print(f"\nall {len(pool_x)} pool labels: accuracy {full_accuracy:.3f} / macro-F1 {full_f1:.3f}")
    for strategy in STRATEGIES[1:]:
        most = args.seed_size + args.batch * args.rounds
        reached = next((p["labels"] for p in mean[strategy] if p["f1_macro"] >= target), f"more than {most}")
        gain = mean[strategy][-1]["f1_macro"] - target
        print(f"{strategy}: macro-F1 {gain:+.3f} vs random at {mean['random'][-1]['labels']} labels; reaches "
              f"random's final macro-F1 with {reached} labels")
    print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps({"machine": host, "curves": mean, "runs": per_strategy,
                                         "all_labels": {"accuracy": full_accuracy, "f1_macro": full_f1},
                                         "seconds": seconds}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
