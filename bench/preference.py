"""Preference tuning on real tweets: does each method (DPO, ORPO, KTO, SimPO) teach an SFT'd decoder to prefer
the positive tweet when asked for one, on held-out pairs?

Pairs come from TweetEval sentiment (read from ../shared/data/tweeteval/sentiment; see its SOURCE.md). Its train
file is missing there, so the positive and negative tweets of its val and test files are pooled: no TweetEval
leaderboard figure is computed or compared. A topic is a word that tweets of both polarities name, mostly
capitalised (an entity: a person, a brand, a day); a pair is the prompt "Write a positive tweet about <topic>", a
positive tweet naming it (chosen) and a negative one naming it (rejected), each tweet in one pair at most. A seeded
share of the pairs is held out, and their tweets are kept out of every training step (tokenizer, SFT, tuning).

The decoder is a small GPT-2 built here (no model hub): a byte-level BPE tokenizer learnt on the training tweets
and random weights. It is first fine-tuned (task causal-lm) to write a positive or a negative tweet about a topic
on request, then each method tunes that SFT run (model.name is the SFT run directory) through `tuneforge train`'s
one skeleton. The baseline row is the SFT run itself. The table reports, on the held-out pairs, the share where
the tuned model alone gives the chosen tweet the higher log-probability, the reward accuracy and margin (reward =
beta * (log p tuned - log p SFT), DPO's implicit reward, computed the same way for every method) and the change of
the chosen-minus-rejected log-probability margin; then the machine and its load average before and after.

    python bench/preference.py                    # the full configuration (an idle machine: tens of minutes)
    python bench/preference.py --tiny             # a minute or two: checks that it all runs, figures mean nothing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "tweeteval" / "sentiment"
METHODS = ("dpo", "orpo", "kto", "simpo")
NEGATIVE, POSITIVE = 0, 2  # TweetEval sentiment: 0 negative, 1 neutral, 2 positive
STOPWORDS = set("""a an the and or but if then so to of in on at by for with from as is are was were be been am i
me my we our you your he she it its they them their this that these those not no do does did have has had will
would can could should just all any some more most very too also up down out about into over after before than
now today tomorrow tonight day night time going get got go see new one two first last like what when who how why
where which there here his her him us http https user rt amp happy hey thanks thank wow daily young let please
yes yeah lol omg love great good best bad worst""".split())
WORD = re.compile(r"[A-Za-z][A-Za-z\-]{2,}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="TweetEval sentiment folder")
    parser.add_argument("--tiny", action="store_true", help="a tiny configuration that only checks the bench runs")
    parser.add_argument("--topics", type=int, default=150, help="topics kept (most tweets of both polarities)")
    parser.add_argument("--train-pairs", type=int, default=3000, help="training pairs at most")
    parser.add_argument("--held-out-pairs", type=int, default=200, help="held-out pairs")
    parser.add_argument("--sft-rows", type=int, default=0, help="SFT tweets at most (0: every topic tweet)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--sft-epochs", type=float, default=3.0)
    parser.add_argument("--epochs", type=float, default=1.0, help="preference epochs per method")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="preference learning rate")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.tiny:
        args.topics, args.train_pairs, args.held_out_pairs, args.sft_rows = 20, 64, 24, 200
        args.layers, args.width, args.vocab, args.sft_epochs, args.epochs = 1, 32, 600, 1.0, 1.0
        args.max_length = 64
    return args


def read_split(folder: Path, prefix: str) -> list[tuple[str, int]]:
    files = [folder / f"{prefix}_text.txt", folder / f"{prefix}_labels.txt"]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        sys.exit(f"error: TweetEval sentiment not found ({', '.join(missing)}); pass --data")
    texts = files[0].read_text(encoding="utf-8").splitlines()
    labels = [int(value) for value in files[1].read_text(encoding="utf-8").split()]
    return [(text.strip(), label) for text, label in zip(texts, labels, strict=True)
            if label in (NEGATIVE, POSITIVE) and text.strip()]


def topics_of(tweets: list[tuple[str, int]], count: int) -> list[str]:
    """Words named by tweets of both polarities, capitalised in most of their uses (entities), most shared first."""
    seen: dict[int, Counter] = {NEGATIVE: Counter(), POSITIVE: Counter()}
    capital: Counter = Counter()
    uses: Counter = Counter()
    for text, label in tweets:
        words = WORD.findall(text)
        for word in words:
            uses[word.lower()] += 1
            capital[word.lower()] += word[0].isupper()
        seen[label].update({word.lower() for word in words})
    candidates = [word for word in seen[POSITIVE] if word in seen[NEGATIVE] and word not in STOPWORDS
                  and capital[word] >= 0.6 * uses[word]]
    candidates.sort(key=lambda word: (-min(seen[POSITIVE][word], seen[NEGATIVE][word]), word))
    return candidates[:count]


def build_pairs(tweets: list[tuple[str, int]], topics: list[str], seed: int
                ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(preference pairs, SFT rows) of tweets naming a topic; each tweet is used once, under its first topic."""
    rng = random.Random(seed)
    by_topic: dict[str, dict[int, list[str]]] = {topic: {NEGATIVE: [], POSITIVE: []} for topic in topics}
    for text, label in tweets:
        named = {word.lower() for word in WORD.findall(text)}
        topic = next((topic for topic in topics if topic in named), None)
        if topic is not None:
            by_topic[topic][label].append(text)
    pairs, sft = [], []
    for topic, sides in by_topic.items():
        for label, texts in sides.items():
            mood = "positive" if label == POSITIVE else "negative"
            sft += [{"prompt": prompt(topic, mood), "response": text} for text in texts]
        good, bad = sides[POSITIVE][:], sides[NEGATIVE][:]
        rng.shuffle(good)
        rng.shuffle(bad)
        pairs += [{"prompt": prompt(topic, "positive"), "chosen": g, "rejected": b}
                  for g, b in zip(good, bad, strict=False)]
    rng.shuffle(pairs)
    rng.shuffle(sft)
    return pairs, sft


def prompt(topic: str, mood: str) -> str:
    return f"Write a {mood} tweet about {topic}:\n"


def build_decoder(folder: Path, texts: list[str], args: argparse.Namespace) -> Path:
    """A GPT-2 with random weights and a byte-level BPE tokenizer learnt on `texts`, saved like a hub model."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    specials = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=args.vocab, special_tokens=list(specials.values()),
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, model_max_length=512, **specials)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(args.seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=args.width, n_layer=args.layers,
                        n_head=max(1, args.width // 64), n_positions=512, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import trl

    import tuneforge

    load_before = os.getloadavg()
    started = time.time()
    tweets = read_split(args.data, "test") + read_split(args.data, "val")
    topics = topics_of(tweets, args.topics)
    pairs, sft_rows = build_pairs(tweets, topics, args.seed)
    held_pairs, train_pairs = pairs[:args.held_out_pairs], pairs[args.held_out_pairs:][:args.train_pairs]
    if not train_pairs or not held_pairs:
        sys.exit("error: no pairs could be built; check --data and --topics")
    held_texts = {text for pair in held_pairs for text in (pair["chosen"], pair["rejected"])}
    sft_rows = [row for row in sft_rows if row["response"] not in held_texts]
    sft_rows = sft_rows[:args.sft_rows] if args.sft_rows else sft_rows
    train = {"epochs": args.sft_epochs, "batch_size": args.batch_size, "learning_rate": 1e-3,
             "max_length": args.max_length, "warmup_ratio": 0.05, "logging_steps": 20, "seed": args.seed,
             "save_checkpoints": False}
    quiet = {"early_stopping": {"enabled": False}, "generation": {"max_new_tokens": 24, "eval_examples": 16}}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tuneforge-preference-") as scratch:
        root = Path(scratch)
        model = build_decoder(root / "decoder", [row["response"] for row in sft_rows], args)
        sft_file = write_jsonl(root / "sft.jsonl", sft_rows)
        clock = time.time()
        sft = tuneforge.fine_tune({
            "task": "causal-lm", "model": {"name": str(model)},
            "data": {"train": str(sft_file), "validation_split": 0.05, "cache_dir": str(root / "cache")},
            "train": train, **quiet, "output": {"dir": str(root / "sft"), "tensorboard": "off"}})
        sft_seconds = time.time() - clock
        files = {"train": write_jsonl(root / "pairs-train.jsonl", train_pairs),
                 "validation": write_jsonl(root / "pairs-held-out.jsonl", held_pairs)}
        for method in args.methods:
            clock = time.time()
            run = tuneforge.fine_tune({
                "task": "preference", "model": {"name": str(sft.directory)}, "preference": {"method": method},
                "data": {**{role: str(path) for role, path in files.items()}, "cache_dir": str(root / "cache")},
                "train": {**train, "epochs": args.epochs, "learning_rate": args.learning_rate},
                **quiet, "output": {"dir": str(root / method), "tensorboard": "off"}})
            held = run.metrics["validation"]
            results.append({"method": method, "seconds": time.time() - clock, **{
                key: held[key] for key in ("logps_accuracy", "reward_accuracy", "reward_margin", "logps_margin",
                                           "reference_logps_margin", "reference_logps_accuracy", "pairs")}})
    load_after = os.getloadavg()
    host = machine()
    baseline = results[0] if results else None
    print(f"\nTweetEval sentiment preference pairs: {len(train_pairs)} for training, {len(held_pairs)} held out, "
          f"{len(topics)} topics; decoder GPT-2 {args.layers} layers x {args.width}, vocabulary {args.vocab}"
          + (" (--tiny: checks that the bench runs; the figures mean nothing)" if args.tiny else ""))
    print("| model | held-out: tuned prefers chosen | reward accuracy | reward margin | log-p margin "
          "(change) | wall time |\n|---|---:|---:|---:|---:|---:|")
    if baseline is not None:
        print(f"| SFT run (the reference) | {baseline['reference_logps_accuracy']:.3f} | - | - | "
              f"{baseline['reference_logps_margin']:.2f} | {sft_seconds:.0f} s |")
    for row in results:
        change = row["logps_margin"] - row["reference_logps_margin"]
        print(f"| SFT + {row['method']} | {row['logps_accuracy']:.3f} | {row['reward_accuracy']:.3f} | "
              f"{row['reward_margin']:.3f} | {row['logps_margin']:.2f} ({change:+.2f}) | {row['seconds']:.0f} s |")
    gpu = f", GPU {host['gpu']}" if host["gpu"] else ", no GPU"
    print(f"\nmachine: {host['cpu']}, {host['cores']} cores, torch threads {host['torch_threads']}{gpu}; "
          f"torch {host['torch']}, trl {trl.__version__}, python {host['python']}")
    print(f"load average (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in load_before)} before, "
          f"{', '.join(f'{v:.2f}' for v in load_after)} after; total {time.time() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"machine": host, "load_before": load_before, "load_after": load_after,
                                         "settings": {k: str(v) for k, v in vars(args).items()},
                                         "sft_seconds": sft_seconds, "results": results}, indent=2),
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
