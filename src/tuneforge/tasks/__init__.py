"""One module per task type: tokenisation, metrics and prediction decoding."""

from types import ModuleType

from tuneforge.tasks import classification, multilabel, regression, token_classification

_TASKS: dict[str, ModuleType] = {
    module.NAME: module for module in (classification, regression, token_classification, multilabel)
}


def get_task(name: str) -> ModuleType:
    return _TASKS[name]
