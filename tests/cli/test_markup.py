"""Bracketed text in messages (pip extras, list indices) reaches the terminal as written, styles still apply."""

from __future__ import annotations

from tuneforge.cli.display import errors, show_problems
from tuneforge.cli.main import report
from tuneforge.errors import Problem, TuneforgeError

FIX = "install the ONNX extra: pip install 'tuneforge[onnx]'"


def test_an_error_fix_keeps_its_pip_extra(capsys) -> None:  # noqa: ANN001
    assert report(TuneforgeError("ONNX export needs onnx", fix=FIX)) == 1
    err = capsys.readouterr().err
    assert "pip install 'tuneforge[onnx]'" in err
    assert "[red bold]" not in err and "error:" in err  # the printer's own markup still styles


def test_problem_lists_keep_brackets_and_styles(capsys) -> None:  # noqa: ANN001
    show_problems([Problem(where="texts[0]", message="needs [onnx]", fix=FIX)])
    err = capsys.readouterr().err
    assert "texts[0]: needs [onnx]" in err and "'tuneforge[onnx]'" in err
    assert "[red]" not in err and "error" in err
    errors.print("[green]done[/green] \\[escaped] [bold red on white]x[/]")
    assert capsys.readouterr().err.strip() == "done [escaped] x"
