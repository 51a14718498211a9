"""The task vocabulary: every name `task:` accepts, what it stands for, and which tasks write text.

`tuneforge train`, `estimate` and `recommend` all read a task name through `resolve_task`, so a name one of them
takes, the others take too.
"""

from __future__ import annotations

from typing import Literal, get_args

from tuneforge.errors import TuneforgeError

TaskName = Literal["classification", "regression", "token-classification", "multilabel", "seq2seq", "causal-lm",
                   "preference", "reward"]
TASKS: tuple[str, ...] = get_args(TaskName)
TASK_ALIASES = {"ner": "token-classification", "token_classification": "token-classification",
                "multi-label": "multilabel", "multi_label": "multilabel", "multilabel-classification": "multilabel",
                "text2text": "seq2seq", "sequence-to-sequence": "seq2seq", "causal_lm": "causal-lm",
                "clm": "causal-lm", "sft": "causal-lm", "preference-tuning": "preference",
                "preference_tuning": "preference", "reward-model": "reward", "reward_model": "reward"}
GENERATIVE_TASKS = ("seq2seq", "causal-lm")  # tasks whose model writes text (see train/generative.py)
# Task names that are classification plus a required second text column.
PAIR_TASKS = {"pair-classification": "classification", "pair_classification": "classification",
              "sentence-pair-classification": "classification"}
PAIR_TASK = "pair-classification"  # the spelling the CLI and the messages use


def normalise_task(name: str) -> str:
    """A task name with its alias resolved; a name the vocabulary does not know comes back lower-cased."""
    name = name.strip().lower()
    return TASK_ALIASES.get(name, name)


def resolve_task(name: str) -> tuple[str, bool]:
    """(the recipe task, whether it classifies text pairs) for any name `task:` accepts; others are an error."""
    name = name.strip().lower()
    if name in PAIR_TASKS:
        return PAIR_TASKS[name], True
    task = normalise_task(name)
    if task not in TASKS:
        raise TuneforgeError(f"unknown task '{name}'",
                             fix=f"use one of {', '.join(TASKS)}, or {PAIR_TASK} (aliases: "
                                 f"{', '.join(sorted(TASK_ALIASES))})")
    return task, False
