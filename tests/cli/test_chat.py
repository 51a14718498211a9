"""`tuneforge chat` in a pseudo-terminal: two turns answered with the conversation so far, /system, /reset and
/exit, each answer the one `tuneforge.load(run).generate` gives for the same chat."""

from __future__ import annotations

import os
import sys

import pytest

pexpect = pytest.importorskip("pexpect")

FIRST, SECOND = "repeat: red cat", "repeat: sun moon"


def _answer(child, message: str) -> str:
    """Send a line and return what the program wrote before the next prompt (the answer, streamed)."""
    child.sendline(message)
    child.expect_exact("you> ")
    lines = child.before.replace("\r", "").split("\n")
    assert lines[0] == message  # the terminal echoes the line typed
    return "\n".join(lines[1:]).strip()


def test_two_turns_system_and_reset(tiny_llama_chat_run):
    import tuneforge

    predictor = tuneforge.load(tiny_llama_chat_run)
    first = predictor.generate([[{"role": "user", "content": FIRST}]])[0]
    second = predictor.generate([[{"role": "user", "content": FIRST}, {"role": "assistant", "content": first},
                                  {"role": "user", "content": SECOND}]])[0]
    fresh = predictor.generate([[{"role": "system", "content": "be brief"}, {"role": "user", "content": SECOND}]])[0]

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TERM": "dumb", "NO_COLOR": "1", "COLUMNS": "200"}
    child = pexpect.spawn(sys.executable, ["-m", "tuneforge.cli.main", "chat", str(tiny_llama_chat_run)], env=env,
                          encoding="utf-8", timeout=180, dimensions=(50, 200))
    try:
        child.expect_exact("you> ")
        assert "multi-turn" in child.before and "/reset" in child.before
        assert _answer(child, FIRST) == first
        assert _answer(child, SECOND) == second  # the first exchange is part of the prompt
        assert _answer(child, "/system be brief") == "(system prompt: 'be brief')"
        assert _answer(child, "/reset") == "(conversation forgotten)"
        assert _answer(child, SECOND) == fresh  # only the system prompt and the new message
        assert "unknown command /help" in _answer(child, "/help")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_chat_refuses_classification_as_text(tmp_path, tiny_llama_chat_run, capsys):
    import shutil

    import yaml

    from tuneforge.cli.main import main

    run = tmp_path / "run"
    shutil.copytree(tiny_llama_chat_run, run)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    (run / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "lm": {**recipe["lm"], "classify": True}}))
    (run / "metrics.json").write_text('{"labels": ["a", "b"]}')
    assert main(["chat", str(run)]) == 1
    assert "nothing to chat with" in capsys.readouterr().err
