"""Back-translation: translate into a pivot language and back, which rewords a text and keeps its meaning.

Apertium (rule-based, Debian packages, no model download) is the default engine; a pair of Transformers
translation models (MarianMT, T5, ...) is used for a pivot when the recipe names them.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tuneforge.errors import TuneforgeError
from tuneforge.models.resolve import resolve_model

Translator = Callable[[list[str]], list[str]]
# Apertium marks words it could not translate (*), generate (#) or analyse (@); -u drops only the first.
_MARKS = re.compile(r"(?<!\w)[#@](?=\w)")


def _apertium_fix(source: str, pivot: str) -> str:
    return (f"install Apertium and the language pair, e.g. `apt-get install apertium apertium-{source}-{pivot}` "
            "(`apt-cache search apertium-` lists the pairs), or name Transformers translation models for this "
            "pivot in the method's `models`")


@dataclass
class Apertium:
    """`apertium -u SRC-PIVOT | apertium -u PIVOT-SRC`, one process per batch of lines, each with a time limit."""

    source: str
    pivot: str
    batch_size: int = 64
    timeout: float = 120.0

    def check(self) -> None:
        """Fail before any work when the binary or a direction of the pair is missing."""
        if shutil.which("apertium") is None:
            raise TuneforgeError("back-translation through Apertium needs the `apertium` command, which is not "
                                 "installed", fix=_apertium_fix(self.source, self.pivot))
        try:
            listed = subprocess.run(["apertium", "-l"], capture_output=True, text=True, timeout=30, check=False)
        except subprocess.TimeoutExpired:
            raise TuneforgeError("`apertium -l` did not answer within 30 s",
                                 fix="check the Apertium installation (`apertium -l` should list its modes)") from None
        modes = set(listed.stdout.split())
        missing = [mode for mode in (f"{self.source}-{self.pivot}", f"{self.pivot}-{self.source}") if mode not in modes]
        if missing:
            installed = ", ".join(sorted(modes)) or "none"
            raise TuneforgeError(
                f"Apertium has no {' or '.join(missing)} translation mode (installed: {installed})",
                fix=_apertium_fix(self.source, self.pivot) + "; pivots and source_language are Apertium language "
                    "codes, as in the mode names `apertium -l` prints")

    def __call__(self, texts: list[str]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            there = self._run(f"{self.source}-{self.pivot}", batch)
            out += self._run(f"{self.pivot}-{self.source}", there)
        return [_clean(text, original) for text, original in zip(out, texts, strict=True)]

    def translate(self, texts: list[str]) -> list[str]:
        """One way, source -> pivot: translate-train and translate-test use the same engine as back-translation."""
        out: list[str] = []
        for start in range(0, len(texts), self.batch_size):
            out += self._run(f"{self.source}-{self.pivot}", texts[start:start + self.batch_size])
        return [_clean(text, original) for text, original in zip(out, texts, strict=True)]

    def _run(self, mode: str, lines: list[str]) -> list[str]:
        # One line per text: Apertium keeps line breaks, so line i of the output is text i's translation.
        flat = [" ".join(line.split()) for line in lines]
        translated = self._call(mode, "\n".join(flat) + "\n").split("\n")[: len(flat)]
        if len(translated) != len(flat):  # should not happen; translate one at a time rather than misalign
            translated = [self._call(mode, line + "\n").strip() for line in flat]
        return translated

    def _call(self, mode: str, text: str) -> str:
        try:
            done = subprocess.run(["apertium", "-u", mode], input=text, capture_output=True, text=True,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise TuneforgeError(f"Apertium ({mode}) took longer than {self.timeout:g} s for a batch of "
                                 f"{text.count(chr(10))} texts",
                                 fix="raise the method's timeout, or lower its batch_size") from None
        if done.returncode != 0:
            raise TuneforgeError(f"Apertium ({mode}) failed: {done.stderr.strip().splitlines()[0:1]}",
                                 fix=_apertium_fix(*mode.split("-", 1)))
        return done.stdout


def _clean(text: str, original: str) -> str:
    if "#" not in original and "@" not in original:
        text = _MARKS.sub("", text)
    return " ".join(text.split())


@dataclass
class TransformersTranslator:
    """Two sequence-to-sequence models: source -> pivot, then pivot -> source (greedy, so deterministic)."""

    forward: str
    backward: str
    batch_size: int = 16
    max_length: int = 256
    _loaded: dict[str, tuple] = field(default_factory=dict, repr=False)

    def check(self) -> None:
        self._load(self.forward)
        self._load(self.backward)

    def _load(self, name: str) -> tuple:
        if name not in self._loaded:
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            resolved = resolve_model(name)
            try:
                tokenizer = AutoTokenizer.from_pretrained(resolved.path, local_files_only=resolved.offline)
                model = AutoModelForSeq2SeqLM.from_pretrained(resolved.path, local_files_only=resolved.offline,
                                                              use_safetensors=True)
            except (OSError, ValueError) as error:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise TuneforgeError(
                    f"could not load the translation model '{name}': {reason}",
                    fix="name a local folder or hub id of a sequence-to-sequence model with safetensors weights "
                        "(e.g. a MarianMT model), or leave `models` empty to translate with Apertium") from None
            model.eval()
            self._loaded[name] = (tokenizer, model)
        return self._loaded[name]

    def _translate(self, name: str, texts: list[str]) -> list[str]:
        import torch

        tokenizer, model = self._load(name)
        out = [""] * len(texts)
        todo = [i for i, text in enumerate(texts) if text.strip()]  # an empty first leg stays empty
        for start in range(0, len(todo), self.batch_size):
            indices = todo[start:start + self.batch_size]
            batch = tokenizer([texts[i] for i in indices], return_tensors="pt", padding=True, truncation=True,
                              max_length=self.max_length)
            with torch.no_grad():
                generated = model.generate(**batch, max_new_tokens=self.max_length, num_beams=1, do_sample=False)
            for index, text in zip(indices, tokenizer.batch_decode(generated, skip_special_tokens=True), strict=True):
                out[index] = text
        return out

    def translate(self, texts: list[str]) -> list[str]:
        """One way, with the forward model only."""
        return [" ".join(text.split()) for text in self._translate(self.forward, texts)]

    def __call__(self, texts: list[str]) -> list[str]:
        return [" ".join(text.split()) for text in self._translate(self.backward, self._translate(self.forward,
                                                                                                    texts))]


@dataclass
class BackTranslation:
    """Each variant of a text goes through a different pivot, chosen at random among `pivots`."""

    pivots: Sequence[str] = ("spa",)
    source_language: str = "eng"
    models: dict[str, list[str]] = field(default_factory=dict)
    batch_size: int = 64
    timeout: float = 120.0
    name: str = "back_translation"

    def translator(self, pivot: str) -> Apertium | TransformersTranslator:
        if pivot in self.models:
            forward, backward = self.models[pivot]
            return TransformersTranslator(forward, backward, batch_size=min(self.batch_size, 16))
        return Apertium(self.source_language, pivot, self.batch_size, self.timeout)

    def augment(self, texts: list[str], counts: list[int], rng: random.Random) -> list[list[str]]:
        routes: dict[str, list[int]] = {pivot: [] for pivot in self.pivots}
        for index, count in enumerate(counts):
            for pivot in rng.sample(list(self.pivots), min(count, len(self.pivots))):
                routes[pivot].append(index)
        results: list[list[str]] = [[] for _ in texts]
        for pivot, indices in routes.items():
            if not indices:
                continue
            translate = self.translator(pivot)
            translate.check()
            for index, text in zip(indices, translate([texts[i] for i in indices]), strict=True):
                if text.strip() and text not in results[index]:
                    results[index].append(text)
        return results
