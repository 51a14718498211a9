"""`tuneforge recommend --task ner` reads CoNLL files: a row is a sentence, lengths come from its tokens."""

from __future__ import annotations

from tuneforge.cli.main import main
from tuneforge.data.profile import estimate_tokens, profile_conll, profile_data

CONLL = "John B-PER\nwent O\nto O\nParis B-LOC\n\nMary B-PER\nsmiled O\n\n-DOCSTART- O\n\nthe O\nend O\n"


def test_conll_profile_counts_sentences_and_tokens(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text(CONLL, encoding="utf-8")
    profile = profile_data(path)
    assert profile.rows == 3  # the document marker is no sentence
    assert profile.labels == 3  # B-PER, O, B-LOC
    assert profile.token_lengths == tuple(sorted(estimate_tokens(text) for text in
                                                 ("John went to Paris", "Mary smiled", "the end")))
    txt = tmp_path / "train.txt"  # .txt is CoNLL only when asked: it may hold one text per line
    txt.write_text(CONLL, encoding="utf-8")
    assert profile_conll(txt).rows == profile_data(txt, conll=True).rows == 3


def test_recommend_ner_on_a_conll_file(tmp_path, capsys):
    path = tmp_path / "train.txt"
    path.write_text((CONLL + "\n") * 40, encoding="utf-8")
    assert main(["recommend", "--task", "ner", "--data", str(path), "--memory", "8GB", "--json"]) == 0
    out = capsys.readouterr().out
    import json

    result = json.loads(out[out.index("{"):])
    assert result["request"]["rows"] == 120 and result["request"]["task"] == "token-classification"
    assert result["candidates"] and result["candidates"][0]["fits"]
