"""Domain rule packs and user rules: known rewrites, fixed points, and errors that name the rule."""

from __future__ import annotations

import pickle

import pytest

from tuneforge.data.domain_rules import Rule, TextRules, available_packs, check_rules, load_pack, rules_from_recipe
from tuneforge.errors import RecipeError, TuneforgeError
from tuneforge.recipe import recipe_from_dict


def pack(name: str) -> TextRules:
    return TextRules(load_pack(name), packs=[name])


LEGAL = [
    ("Relief under 42 U.S.C. § 1983 was denied.", "Relief under 42 USC 1983 was denied."),
    ("See Roe vs. Wade, 410 U.S. 113 (1973).", "See Roe v. Wade, [CITATION]."),
    ("as held in 123 F.3d 456, 460 (9th Cir. 1997)", "as held in [CITATION]"),
    ("Case No. 1:19-cv-01234 was stayed", "[CASE_NUMBER] was stayed"),
    ("under §§ 3 and 4 and ¶ 12", "under sections 3 and 4 and paragraph 12"),
    ("Art. 5 para. 2", "Article 5 paragraph 2"),
]
MEDICAL = [
    ("Pt is a 64 y/o male c/o SOB, hx of HTN and DM2.",
     "patient is a 64 year old male complains of shortness of breath, history of hypertension and diabetes "
     "mellitus."),
    ("Seen by Dr. Smith on 03/14/2021, MRN: 0045123.", "Seen by [NAME] on [DATE], MRN [ID]."),
    ("Patient: John Smith, call 555-123-4567", "Patient: [NAME], call [PHONE]"),
    ("metoprolol 50mg po bid prn", "metoprolol 50 mg po twice daily as needed"),
    ("admitted January 5, 2020 s/p fx", "admitted [DATE] status post fracture"),
]
FINANCIAL = [
    ("Revenue rose to $1.2bn from $950m.", "Revenue rose to 1.2 billion USD from 950 million USD."),
    ("Net sales EUR 5.3 mn, up 12%", "Net sales 5.3 million EUR, up 12 percent"),
    ("Apple (NASDAQ: AAPL) and $MSFT gained", "Apple (ticker AAPL) and ticker MSFT gained"),
    ("a profit of 1,250,000 dollars in FY2023", "a profit of 1250000 dollars in fiscal year 2023"),
    ("Q3FY2024 EBIT grew 4 pct YoY", "Q3 2024 EBIT grew 4 percent year on year"),
    ("The report of 2023-12-31 said", "The report of [DATE] said"),
]


@pytest.mark.parametrize(("name", "cases"), [("legal", LEGAL), ("medical", MEDICAL), ("financial", FINANCIAL)])
def test_packs_rewrite_known_texts_and_are_fixed_points(name: str, cases: list[tuple[str, str]]) -> None:
    rules = pack(name)
    for original, expected in cases:
        once = rules(original)
        assert once == expected, original
        # Rules run at training and again on evaluation texts that may already be rewritten: twice == once.
        assert rules(once) == once


def test_every_shipped_pattern_compiles() -> None:
    assert {"legal", "medical", "financial", "dates"} <= set(available_packs())
    for name in available_packs():
        assert check_rules(load_pack(name)) == []


def test_unknown_pack_names_the_known_ones() -> None:
    with pytest.raises(TuneforgeError, match="legal"):
        load_pack("astrology")


def test_user_rules_run_after_packs_and_bad_patterns_name_their_index() -> None:
    recipe = recipe_from_dict({"domain": {"rule_packs": ["financial"],
                                          "rules": [{"pattern": r"(\d+) USD", "replacement": r"USD \1"}]}})
    assert rules_from_recipe(recipe)("$5") == "USD 5"
    broken = recipe_from_dict({"domain": {"rules": [{"pattern": "ok", "replacement": "fine"},
                                                    {"pattern": "(unclosed", "replacement": "x"}]}})
    with pytest.raises(RecipeError) as caught:
        rules_from_recipe(broken)
    assert caught.value.problems[0].where == "domain.rules[1]"
    missing_group = check_rules([Rule(pattern="a", replacement=r"\1")])
    assert missing_group and "group" in missing_group[0].message


def test_functions_and_unicode_normalisation() -> None:
    rules = TextRules(functions=["string:capwords"], normalization="NFKC")
    assert rules("ｆｕｌｌ width ﬁne") == "Full Width Fine"
    with pytest.raises(TuneforgeError, match="cannot be imported"):
        rules_from_recipe(recipe_from_dict({"domain": {"functions": ["nowhere.module:fn"]}}))


def test_rules_pickle_as_plain_data_for_the_datasets_cache() -> None:
    rules = pack("medical")
    assert rules("pt") == "patient"  # compiles the patterns
    copy = pickle.loads(pickle.dumps(rules))
    assert copy.to_dict() == rules.to_dict() and copy("hx") == "history"
    assert "_compiled" not in copy.__getstate__()
    assert TextRules.from_dict(rules.to_dict())("Dr. Who") == "[NAME]"
