"""One pipeline per run kind behind one protocol (base.RunPipeline); the skeleton looks the kind up here.

A new kind is one module beside these and one line in PIPELINES.
"""

from __future__ import annotations

from tuneforge.errors import TuneforgeError
from tuneforge.kinds import GENERATIVE, MULTILABEL, MULTIMODAL, MULTITASK, PREFERENCE, REWARD, TAGGING, TEXT, RunKind
from tuneforge.train.pipelines.base import RunPipeline
from tuneforge.train.pipelines.classifier import TaggingPipeline, TextPipeline
from tuneforge.train.pipelines.generative import GenerativePipeline
from tuneforge.train.pipelines.multimodal import MultimodalPipeline
from tuneforge.train.pipelines.multitask import MultitaskPipeline
from tuneforge.train.pipelines.preference import PreferencePipeline

PIPELINES: dict[str, type[RunPipeline]] = {
    TEXT: TextPipeline,
    MULTILABEL: TextPipeline,
    TAGGING: TaggingPipeline,
    GENERATIVE: GenerativePipeline,
    MULTIMODAL: MultimodalPipeline,
    MULTITASK: MultitaskPipeline,
    PREFERENCE: PreferencePipeline,
    REWARD: PreferencePipeline,
}


def pipeline_for(kind: RunKind) -> RunPipeline:
    if kind.name not in PIPELINES:
        raise TuneforgeError(f"runs of kind '{kind.name}' are not trained by `tuneforge train`",
                             fix="build an ensemble with `tuneforge ensemble` from finished runs")
    return PIPELINES[kind.name]()
