"""One module per task type: tokenisation, metrics and prediction decoding."""

from types import ModuleType

from tuneforge.tasks import causal_lm, classification, multilabel, regression, seq2seq, token_classification

_TASKS: dict[str, ModuleType] = {
    module.NAME: module for module in (classification, regression, token_classification, multilabel, seq2seq,
                                       causal_lm)
}


def get_task(name: str) -> ModuleType:
    return _TASKS[name]
