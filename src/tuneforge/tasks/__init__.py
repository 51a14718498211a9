"""One module per task type: tokenisation, metrics and prediction decoding."""

from types import ModuleType

from tuneforge.tasks import classification, regression

_TASKS: dict[str, ModuleType] = {classification.NAME: classification, regression.NAME: regression}


def get_task(name: str) -> ModuleType:
    return _TASKS[name]
