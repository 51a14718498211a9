"""`tuneforge chat RUN`: talk to a fine-tuned generative run in the terminal, its answer streamed as it is written.

Each turn renders the whole conversation with the run's chat template and system prompt and generates with the
run's generation settings (greedy unless the recipe samples), exactly as `tuneforge predict` and the served API
build a prompt. Commands: /reset (forget the conversation), /system TEXT (replace the system prompt), /exit.
Ctrl-C stops an answer half-way; Ctrl-D or /exit quits. A run trained on prompt/response pairs (or a seq2seq
run) has no notion of a conversation: each message is answered on its own.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from tuneforge.cli.common import quiet_libraries, trust_option
from tuneforge.errors import TuneforgeError

PROMPT = "you> "
HELP = "/reset forgets the conversation, /system TEXT replaces the system prompt, /exit quits (or Ctrl-D)"


@dataclass
class Conversation:
    """The turns so far and the system prompt; what one turn sends to the model."""

    system: str | None
    multi_turn: bool
    turns: list[dict[str, str]] = field(default_factory=list)

    def messages(self, text: str) -> list[dict[str, str]]:
        history = self.turns if self.multi_turn else []
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, *history, {"role": "user", "content": text}]

    def answered(self, text: str, reply: str) -> None:
        if self.multi_turn:
            self.turns += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]

    def drop_oldest(self) -> bool:
        """Forget the oldest exchange (the prompt no longer fits the model's context); False when none is left."""
        if len(self.turns) < 2:
            return False
        del self.turns[:2]
        return True


class _Interrupt:
    """A stopping criterion Ctrl-C switches on, so an answer can be cut short without killing the program."""

    def __init__(self) -> None:
        self.stop = False

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.stop, dtype=torch.bool, device=input_ids.device)


class ChatModel:
    """A loaded generative run and how a message becomes its prompt."""

    def __init__(self, predictor: Any, max_new_tokens: int | None) -> None:
        from tuneforge.predict.generative import encode_input, is_chat_run
        from tuneforge.tasks.generation import generation_kwargs

        self.predictor = predictor
        self.recipe = predictor.recipe
        if self.recipe.lm.classify:
            raise TuneforgeError("this run classifies texts by writing a label; there is nothing to chat with",
                                 fix="use `tuneforge predict RUN --data FILE`")
        self.encode = encode_input
        self.multi_turn = is_chat_run(self.recipe)
        spec = self.recipe.generation.model_copy(update={"num_beams": 1})  # tokens stream as they are chosen
        self.kwargs = generation_kwargs(spec, predictor.tokenizer, max_new_tokens=max_new_tokens)
        self.decoder_only = self.recipe.task == "causal-lm"
        config = predictor.model.config
        self.context = getattr(config, "max_position_embeddings", None) if self.decoder_only else None

    def prompt(self, conversation: Conversation, text: str) -> tuple[list[int], bool]:
        """Token ids of the next turn, dropping the oldest exchanges until it fits; (ids, dropped any)."""
        value: Any = conversation.messages(text) if self.multi_turn else text
        dropped = False
        while True:
            ids = self.encode(self.recipe, self.predictor.tokenizer, value)
            if self.context is None or len(ids) + self.kwargs["max_new_tokens"] <= self.context:
                return ids, dropped
            if not conversation.drop_oldest():
                raise TuneforgeError(f"the message needs {len(ids)} tokens; with {self.kwargs['max_new_tokens']} "
                                     f"new ones that is more than the model's {self.context}",
                                     fix="send a shorter message, or pass a smaller --max-new-tokens")
            dropped = True
            value = conversation.messages(text)

    def stream(self, ids: list[int], write: Any) -> str:
        """Generate from `ids`, writing text as it is decoded (transformers' TextIteratorStreamer, the model on
        a thread of its own); returns the whole answer. Ctrl-C ends it early and keeps what was written."""
        import threading

        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        tokenizer, device = self.predictor.tokenizer, self.predictor.device
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        interrupt = _Interrupt()
        inputs = torch.tensor([ids], device=device)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.predictor.model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs),
                                                  streamer=streamer,
                                                  stopping_criteria=StoppingCriteriaList([interrupt]), **self.kwargs)
            except BaseException as error:  # surfaces in the terminal's thread, after the stream closes
                failure.append(error)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        pieces: list[str] = []
        try:
            for piece in streamer:
                if not pieces:
                    piece = piece.lstrip()  # the template's newline after the assistant tag is not the answer's
                pieces.append(piece)
                write(piece)
        except KeyboardInterrupt:
            interrupt.stop = True
            for _ in streamer:  # let generate finish its current step and close the stream
                pass
        worker.join()
        if failure:
            raise failure[0]
        return "".join(pieces).strip()


def run_chat(model: ChatModel, conversation: Conversation, read: Any = input, out: Any = sys.stdout) -> None:
    """The terminal loop: read a line, run a command or answer it; ends on /exit or end of input."""
    while True:
        try:
            text = read(PROMPT).strip()
        except EOFError:
            out.write("\n")
            return
        except KeyboardInterrupt:
            out.write("\n")
            continue
        if not text:
            continue
        if text.startswith("/"):
            command, _, argument = text.partition(" ")
            if command in ("/exit", "/quit"):
                return
            if command == "/reset":
                conversation.turns.clear()
                out.write("(conversation forgotten)\n")
            elif command == "/system":
                conversation.system = argument.strip() or None
                shown = f"'{conversation.system}'" if conversation.system else "none"
                unused = "" if conversation.multi_turn else "; this run reads single prompts, so it has no effect"
                out.write(f"(system prompt: {shown}{unused})\n")
            else:
                out.write(f"(unknown command {command}: {HELP})\n")
            out.flush()
            continue
        ids, dropped = model.prompt(conversation, text)
        if dropped:
            out.write("(the oldest turns were dropped to fit the model's context)\n")

        def write(piece: str) -> None:
            out.write(piece)
            out.flush()

        reply = model.stream(ids, write)
        out.write("\n")
        out.flush()
        conversation.answered(text, reply)


def register(app: typer.Typer) -> None:
    """Adds the verb to the application."""

    @app.command()
    def chat(
        run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A causal-lm or seq2seq run."),
        system: str = typer.Option(None, "--system", show_default=False,
                                   help="System prompt (default: the recipe's lm.system_prompt)."),
        max_new_tokens: int = typer.Option(None, "--max-new-tokens", min=1, show_default=False,
                                           help="Most tokens per answer (default: the recipe's generation "
                                                "section)."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        trust_run_code: bool = trust_option(),
    ) -> None:
        """Chat with a generative run in the terminal, answers streamed token by token; /reset, /system TEXT and
        /exit as commands."""
        quiet_libraries()
        from tuneforge import kinds
        from tuneforge.cli.display import console
        from tuneforge.predict import load

        predictor = load(run_dir, device, trust_run_code=trust_run_code)
        if predictor.kind.name != kinds.GENERATIVE:
            raise TuneforgeError(f"'{run_dir}' is a {predictor.recipe.task} run; chat needs a model that writes "
                                 "text (causal-lm or seq2seq)", fix=f"use `tuneforge predict {run_dir}`")
        model = ChatModel(predictor, max_new_tokens)
        conversation = Conversation(system=system or model.recipe.lm.system_prompt, multi_turn=model.multi_turn)
        how = "multi-turn" if model.multi_turn else "each message answered on its own (the run was not trained " \
                                                    "on chats)"
        console.print(f"chatting with {Path(run_dir).resolve().name} ({model.recipe.task}, {how}); {HELP}",
                      highlight=False, markup=False, soft_wrap=True)
        if model.recipe.generation.num_beams > 1:
            console.print("(the run's beam search is off here: answers stream as each token is chosen)",
                          highlight=False, markup=False)
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
        run_chat(model, conversation)
