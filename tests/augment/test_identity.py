"""Identity terms: the shipped lists, group inference, and swaps that keep alignment and capitalisation."""

from __future__ import annotations

import pytest

from tuneforge.augment.identity import MULTIPLE, Lexicon, infer_groups, joint_groups, load_terms, match_case
from tuneforge.errors import DataError, TuneforgeError
from tuneforge.recipe import FairnessSpec


def test_shipped_lists_cover_every_default_category_with_aligned_groups():
    terms = load_terms()
    assert set(FairnessSpec().identity_categories) <= set(terms)
    for category, groups in terms.items():
        assert len(groups) >= 2, category
        lengths = {len(values) for values in groups.values()}
        assert len(lengths) == 1, f"{category}: aligned lists must have one length, got {lengths}"
        assert sum(len({t for t in values if t}) for values in groups.values()) >= 12, category
    assert {"she", "her", "woman", "mother"} <= set(terms["gender"]["female"])
    assert {"he", "him", "his", "man", "father"} <= set(terms["gender"]["male"])


def test_every_shipped_term_swaps_to_its_aligned_counterpart():
    # Index i of one group is the counterpart of index i of every other group; a term's own swap follows its
    # first position (she -> he, her -> his) and a null counterpart refuses the swap.
    for category, groups in load_terms().items():
        lexicon = Lexicon(category, groups)
        for source, values in groups.items():
            for target, counterparts in groups.items():
                if target == source:
                    continue
                for index, term in enumerate(values):
                    if term is None or values.index(term) != index:
                        continue
                    expected = counterparts[index]
                    assert lexicon.swap(term, source, target) == expected, (category, term, target)


def test_infer_groups_matches_whole_words_case_insensitively():
    texts = [
        "SHE loved the food",            # upper case still counts
        "the waiter said hello",         # waiter is a male term
        "other themes; a manager here",  # 'her' in other, 'he' in themes, 'man' in manager: no match
        "her brother and she",           # female and male -> multiple
        "the table was clean",
        None,                             # a missing text has no group
        "the woman's coat",              # possessive keeps the word boundary
    ]
    assert infer_groups(texts, "gender") == ["female", "male", None, MULTIPLE, None, None, "female"]


def test_phrases_win_over_their_words():
    terms = load_terms(["race_ethnicity", "disability"])
    race = Lexicon("race_ethnicity", terms["race_ethnicity"])
    # 'african american' is one black term, so the swap replaces the phrase, not 'american' alone.
    assert race.swap("An African American nurse", "black", "white") == "An European American nurse"
    # 'person without a disability' contains 'disability' but is the non-disabled phrase.
    assert infer_groups(["a person without a disability"], "disability", terms) == ["non_disabled"]


@pytest.mark.parametrize(("original", "replacement", "expected"), [
    ("she", "he", "he"),
    ("She", "he", "He"),
    ("SHE", "he", "HE"),
    ("African American", "european american", "European American"),
    ("Black woman", "white woman", "White woman"),
])
def test_match_case(original, replacement, expected):
    assert match_case(original, replacement) == expected


def test_variants_swap_both_mentioned_groups_at_once_and_keep_case():
    gender = Lexicon("gender", load_terms(["gender"])["gender"])
    [variant] = gender.variants("She told HIM that her Mother called.")
    assert variant.text == "He told HER that his Father called."
    assert (variant.source, variant.target, variant.swap) == ("female", "male", "female<->male")
    [one_way] = gender.variants("she is great")
    assert (one_way.text, one_way.swap) == ("he is great", "female->male")
    assert gender.variants("the table is great") == []


def test_a_term_without_counterpart_gives_no_half_swapped_variant():
    religion = Lexicon("religion", load_terms(["religion"])["religion"])
    swaps = {v.target: v.text for v in religion.variants("The Muslim prayed at the mosque")}
    assert swaps["jewish"] == "The Jewish prayed at the synagogue"
    assert "atheist" not in swaps  # atheism has no place of worship: no 'Atheist prayed at the mosque'


def test_user_file_appends_aligned_terms_and_adds_categories(tmp_path):
    extra = tmp_path / "terms.yaml"
    extra.write_text("gender:\n  female: [Ballerina]\n  male: [ballerino]\n"
                     "diet:\n  vegan: [vegan]\n  omnivore: [omnivore]\n", encoding="utf-8")
    terms = load_terms(["gender", "diet"], extra_file=extra)
    assert terms["gender"]["female"][-1] == "ballerina"  # normalised to lower case
    assert Lexicon("gender", terms["gender"]).swap("The Ballerina", "female", "male") == "The Ballerino"
    assert infer_groups(["a vegan dish", "an omnivore"], "diet", terms) == ["vegan", "omnivore"]


def test_bad_term_files_and_categories_are_user_errors(tmp_path):
    with pytest.raises(TuneforgeError, match="unknown identity category: cuisine") as caught:
        load_terms(["cuisine"])
    assert "gender" in caught.value.fix
    clash = tmp_path / "clash.yaml"
    clash.write_text("gender:\n  male: [she]\n", encoding="utf-8")
    with pytest.raises(DataError, match="'she' is listed under both 'female' and 'male'"):
        load_terms(extra_file=clash)
    shape = tmp_path / "shape.yaml"
    shape.write_text("gender: [she, he]\n", encoding="utf-8")
    with pytest.raises(DataError, match="must map group names to term lists"):
        load_terms(extra_file=shape)
    with pytest.raises(DataError, match="not found"):
        load_terms(extra_file=tmp_path / "missing.yaml")


def test_joint_groups_key_intersections():
    terms = load_terms(["gender", "religion"])
    assert joint_groups(["the Muslim woman", "he ate", "soup"], terms) == [
        "gender=female|religion=muslim", "gender=male", None]
