"""A fairness audit that cannot measure anything says so instead of passing, and tiny groups are left out."""

from __future__ import annotations

from typing import Any

import pytest

from tuneforge.cli.fairness import show_report
from tuneforge.evaluate.fairness import group_metrics
from tuneforge.evaluate.fairness_audit import AuditData, audit
from tuneforge.recipe import FairnessSpec
from tuneforge.report.fairness import _attributes, _verdict

LABELS = ["neg", "pos"]


def test_a_positive_label_never_predicted_is_not_assessable() -> None:
    y_true = ["pos", "neg", "neg", "pos", "neg", "neg"]
    result = group_metrics(y_true, ["neg"] * 6, ["a", "a", "a", "b", "b", "b"], LABELS, positive_label="pos")
    assert result["demographic_parity_difference"] == 0.0  # the figure alone would look like perfect parity
    assert result["assessable"] is False
    assert "never predicts 'pos'" in result["not_assessable"]
    always = group_metrics(y_true, ["pos"] * 6, ["a", "a", "a", "b", "b", "b"], LABELS, positive_label="pos")
    assert always["assessable"] is False and "always predicts 'pos'" in always["not_assessable"]


def test_groups_below_the_minimum_size_are_left_out_with_a_note() -> None:
    y_true = ["pos", "neg"] * 6 + ["pos"]
    y_pred = ["pos", "pos", "neg"] * 4 + ["pos"]
    groups = ["a"] * 6 + ["b"] * 6 + ["c"]
    result = group_metrics(y_true, y_pred, groups, LABELS, positive_label="pos", min_group_size=5)
    assert set(result["groups"]) == {"a", "b"} and result["compared_groups"] == ["a", "b"]
    assert result["small_groups"] == {"c": 1}
    assert "fewer than 5 rows: c (1)" in result["note"]
    assert result["examples_with_group"] == 12 and result["assessable"] is True
    lonely = group_metrics(y_true, y_pred, ["a"] * 12 + ["c"], LABELS, min_group_size=5)
    assert lonely["assessable"] is False and "fewer than two groups" in lonely["not_assessable"]


class NeverPositive:
    """A classifier that always answers 'neg': the audit's positive class is never predicted."""

    labels = LABELS

    def predict(self, texts: list[str], pairs: Any = None, batch_size: int = 64) -> list[dict]:
        return [{"label": "neg", "score": 0.9} for _ in texts]


@pytest.fixture()
def unassessable_report() -> dict[str, Any]:
    data = AuditData(path="audit.csv", texts=[f"text {i}" for i in range(13)], pairs=None,
                     labels=["pos", "neg"] * 6 + ["pos"], sensitive={"group": ["a"] * 6 + ["b"] * 6 + ["c"]})
    spec = FairnessSpec(counterfactual=False, positive_label="pos", max_demographic_parity_difference=0.1)
    return audit(NeverPositive(), data, spec)


def test_the_audit_does_not_pass_what_it_could_not_assess(unassessable_report: dict[str, Any]) -> None:
    report = unassessable_report
    assert report["breaches"] == []
    assert report["passed"] is None and report["assessable"] is False
    assert any("never predicts 'pos'" in reason for reason in report["not_assessable"])
    assert report["attributes"]["group"]["small_groups"] == {"c": 1}  # the default minimum is 5 rows


def test_the_command_and_the_report_say_not_assessable(unassessable_report: dict[str, Any], capsys) -> None:  # noqa: ANN001
    show_report(unassessable_report)
    out = capsys.readouterr().out
    assert "fairness not assessable" in out and "never predicts 'pos'" in out
    assert "passed" not in out
    assert "left out 1 group(s) with fewer than 5 rows: c (1)" in out
    [callout] = _verdict(unassessable_report, {"max_demographic_parity_difference": 0.1})
    assert callout.tone == "warning" and callout.text.startswith("Not assessable: group: the model never predicts")
    notes = [block.text for block in _attributes(unassessable_report["attributes"], {})
             if getattr(block, "kind", "") == "callout"]
    assert any("fewer than 5 rows: c (1)" in note for note in notes)


class Keyword:
    """Predicts 'pos' for texts with 'good' in them: both classes occur, so parity can be measured."""

    labels = LABELS

    def predict(self, texts: list[str], pairs: Any = None, batch_size: int = 64) -> list[dict]:
        return [{"label": "pos" if "good" in text else "neg", "score": 0.9} for text in texts]


def test_an_attribute_without_groups_does_not_hold_back_one_that_was_measured(capsys) -> None:  # noqa: ANN001
    texts = [f"{'good' if index % 2 else 'bad'} {index}" for index in range(12)]
    data = AuditData(path="audit.csv", texts=texts, pairs=None, labels=["pos", "neg"] * 6,
                     sensitive={"group": ["a"] * 6 + ["b"] * 6, "region": [None] * 12})
    report = audit(Keyword(), data, FairnessSpec(counterfactual=False, max_demographic_parity_difference=0.5))
    assert report["attributes"]["group"]["assessable"] is True
    assert report["passed"] is True and report["not_assessable"] == ["region: no row has a group"]
    show_report(report)
    out = capsys.readouterr().out
    assert "fairness check passed" in out and "not assessed" in out and "region: no row has a group" in out
    callouts = _verdict(report, {"max_demographic_parity_difference": 0.5})
    assert [callout.tone for callout in callouts] == ["info", "ok"]
