"""Report pieces without training: the generic renderer, sanitising, explanations parsing, licences, card."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from tuneforge.report import blocks
from tuneforge.report.evaluation import calibration_numbers
from tuneforge.report.explanations import Attribution, highlight, parse_examples, sanitize
from tuneforge.report.fairness import fairness_findings
from tuneforge.report.html import build_report
from tuneforge.report.model_card import UNKNOWN_LICENCE, base_model_info, wilson_interval

ODD_VALUES = [
    None, 1, 0.5, float("nan"), float("inf"), True, "text", [], {}, [1, "a", None], [[1, 2], [3]],
    [{"a": 1}, {"b": [1, 2]}, {"a": {"deep": True}}], {"x": {"y": {"z": {"w": {"v": [1, {"u": 2}]}}}}},
    {"col": [1, 2], "other": [3, 4]}, {"g1": {"m": 1}, "g2": {"m": 2, "n": None}}, [1, {"mixed": "list"}, [2]],
    list(range(500)), {str(i): i for i in range(300)}, {1: "int key"}, ("tuple", 1),
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=range(len(ODD_VALUES)))
def test_generic_renderer_takes_any_json(value: object) -> None:
    rendered = blocks.to_blocks(value)
    assert rendered and all(hasattr(block, "kind") for block in rendered)


def test_number_formatting() -> None:
    assert blocks.fmt_number(0.123456) == "0.1235" and blocks.fmt_number(0.5) == "0.5"
    assert blocks.fmt_number(0.5, fixed=True) == "0.5000" and blocks.fmt_number(12345) == "12,345"
    assert blocks.fmt_number(math.nan) == "—" and blocks.fmt_number(0.00001234) == "1.23e-05"
    assert blocks.fmt_value(None) == "—" and blocks.fmt_value(False) == "no"
    assert blocks.humanize("ece_before") == "ECE before" and blocks.humanize("f1_macro") == "F1 macro"
    assert blocks.fmt_duration(75) == "1 min 15 s" and blocks.fmt_duration(None) == "—"


def test_calibration_numbers_found_by_name_at_any_depth() -> None:
    flat = calibration_numbers({"ece_before": 0.2, "ece_after": 0.05, "temperature": 1.5})
    assert (flat.before, flat.after, flat.temperature) == (0.2, 0.05, 1.5)
    nested = calibration_numbers({"ece": {"uncalibrated": 0.3, "calibrated": 0.1}, "fit": {"temperature": 2}})
    assert (nested.before, nested.after, nested.temperature) == (0.3, 0.1, 2.0)
    plain = calibration_numbers({"ece": 0.07})
    assert plain.plain == 0.07 and plain.before is None and plain.after is None
    assert calibration_numbers("not a dict").temperature is None


def test_fairness_findings_compare_with_limits() -> None:
    report = {"attributes": {"gender": {"demographic_parity_difference": 0.3, "equalized_odds_difference": 0.05,
                                        "demographic_parity_ratio": 0.4}},
              "thresholds": {"max_demographic_parity_difference": 0.1}}
    findings = fairness_findings(report, {})
    assert findings[0].tone == "danger" and "exceeded" in findings[0].text and "0.3" in findings[0].text
    assert not any("ratio" in f.text.lower() for f in findings)
    assert fairness_findings({"breaches": ["too unfair"]}, {})[0].text == "too unfair"
    assert fairness_findings(["odd"], {}) == []


def test_explanations_are_parsed_from_several_shapes() -> None:
    listed = [{"text": "a b", "prediction": "pos", "attributions": [{"method": "ig", "tokens": ["a", "b"],
                                                                     "scores": [0.1, -0.2]}]}]
    keyed = {"t1": {"input": "a b", "methods": {"shap": [["a", 0.3], ["b", 0.1]]}}}
    own = {"examples": [{"text": "a b", "tokens": ["a", "b"], "scores": [1, 2], "label": "pos"}]}
    for payload, method in ((listed, "ig"), (keyed, "shap"), (own, "attribution")):
        [example] = parse_examples(payload)
        assert example.attributions[0].method == method and example.attributions[0].tokens == ["a", "b"]
    assert parse_examples("nonsense") == [] and parse_examples({"texts": [1, None]}) == []


def test_highlight_escapes_and_joins_word_pieces() -> None:
    marked = highlight(Attribution("ig", ["<b>", "aw", "##ful"], [0.5, -1.0, 0.0]))
    assert "&lt;b&gt;" in marked and "<b>" not in marked
    assert ">aw</span><span" in marked  # the ## piece continues the word without a space
    assert "rgba(220,38,38," in marked and "rgba(22,163,74," in marked


def test_sanitize_keeps_text_and_drops_anything_active() -> None:
    dirty = ('<html><head><style>body{background:url(http://x)}</style><link rel=stylesheet href="http://x">'
             '</head><body><h1>Title</h1><script>alert(1)</script><p onclick="x()" style="color:red">kept '
             '<span style="background:url(http://t)">text</span></p><img src="http://e.com/a.png">'
             '<img src="data:image/png;base64,AAAA"><a href="http://x">link text</a><iframe src="x"></iframe>'
             '<unknown>inner</unknown><div>unclosed')
    clean = sanitize(dirty)
    for bad in ("<script", "alert", "onclick", "url(", "http", "<link", "<iframe", "<a ", "<style", "<h1"):
        assert bad not in clean, bad
    for kept in ("<h4>Title</h4>", 'style="color:red"', "kept", "text", "link text", "inner",
                 '<img src="data:image/png;base64,AAAA">'):
        assert kept in clean, kept
    assert clean.endswith("unclosed</div>")


def test_explanations_html_fragment_is_used_sanitised_when_there_is_no_json(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"task": "classification", "labels": ["a", "b"]}))
    (tmp_path / "explanations").mkdir()
    (tmp_path / "explanations" / "explanations.html").write_text(
        '<p>highlighted <span style="background:rgba(0,200,0,.5)">words</span></p><script>bad()</script>')
    page = build_report(tmp_path).read_text(encoding="utf-8")
    assert "highlighted" in page and "rgba(0,200,0,.5)" in page and "bad()" not in page
    assert "<script" not in page


def test_a_bare_folder_with_metrics_only_still_reports(tmp_path: Path) -> None:
    """No recipe, no data summary, no plots: the report says what is missing instead of failing."""
    (tmp_path / "metrics.json").write_text(json.dumps({"task": "something-new", "test": {"score": 0.7}}))
    page = build_report(tmp_path).read_text(encoding="utf-8")
    assert "data.json is missing" in page and "No training curve" in page and "0.7000" in page
    assert (tmp_path / "model_card.md").read_text().startswith("# Model card")


def test_base_model_licence() -> None:
    bundled = base_model_info("minilm")
    assert bundled.licence == "Apache-2.0" and "sentence-transformers/all-MiniLM-L6-v2" in bundled.display
    assert base_model_info("sentence-transformers/all-MiniLM-L6-v2").licence == "Apache-2.0"
    assert base_model_info("someone/unknown-model").licence == UNKNOWN_LICENCE


def test_local_model_licence_from_its_card(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("---\nlicense: mit\nlanguage: en\n---\n# A model\n")
    assert base_model_info(str(tmp_path)).licence == "MIT"


def test_wilson_interval() -> None:
    low, high = wilson_interval(0.9, 30)
    assert 0.73 < low < 0.75 and 0.96 < high < 0.97
    assert wilson_interval(1.0, 10)[1] == 1.0


def test_template_ships_with_the_package() -> None:
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    package_data = re.search(r"\[tool\.setuptools\.package-data\]\s*tuneforge\s*=\s*\[(.*?)\]", pyproject, re.S)
    assert package_data and '"report/templates/*"' in package_data.group(1)
    assert (Path(blocks.__file__).parent / "templates" / "report.html.j2").is_file()
