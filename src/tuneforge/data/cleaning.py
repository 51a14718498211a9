"""Data cleaning: find garbage rows, personal data, conflicting labels, duplicates and near duplicates, length
outliers, profanity and likely label errors, and drop, flag or mask them as the recipe's `clean:` section says.

Every row a step touches is recorded with its reason in a `CleaningReport` (the run's data_report.json), so
nothing is dropped silently. Steps run in a fixed order on the rows still kept, each seeing the previous one's
masking: garbage, PII, conflicting labels, exact duplicates, near duplicates, length outliers, profanity, and
last the mislabelled check, which needs the cleanest data to fit its cross-validated classifier.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tuneforge.data.pii import find_pii, mask_pii
from tuneforge.data.toxicity import profanity_in
from tuneforge.errors import DataError, Problem, TuneforgeError
from tuneforge.recipe import CleanSpec

STEPS = ("garbage", "pii", "conflicting_labels", "duplicates", "near_duplicates", "length_outliers", "toxicity",
         "mislabelled")
EXCERPT = 200  # characters of a row's text kept in the report
SHINGLE = 5  # character n-grams for near duplicates: robust to a changed word or punctuation in short texts
NUM_PERM = 128
MIN_ROWS_FOR_LENGTH = 8  # quartiles of fewer rows say nothing


@dataclass
class Finding:
    """One row a step acted on: where it is, what was done and why."""

    row: int  # 0-based row of the input
    step: str
    action: str  # drop | flag | mask
    reason: str
    text: str = ""
    label: Any = None
    where: str = ""
    split: str = "train"


@dataclass
class CleaningReport:
    """What cleaning did to one split: rows before and after, and every row touched with its reason."""

    rows_before: int
    rows_after: int = 0
    steps: dict[str, str] = field(default_factory=dict)  # step -> action
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # steps that could not run, and why

    def counts(self) -> dict[str, dict[str, int]]:
        """{step: {action: rows}} for every step that ran, zeros included."""
        table: dict[str, dict[str, int]] = {step: {action: 0} for step, action in self.steps.items()}
        for finding in self.findings:
            row = table.setdefault(finding.step, {})
            row[finding.action] = row.get(finding.action, 0) + 1
        return table

    def summary(self) -> dict[str, Any]:
        return {"rows_before": self.rows_before, "rows_after": self.rows_after, "steps": self.counts(),
                "notes": self.notes}

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "rows": [asdict(f) for f in self.findings]}


@dataclass
class Cleaned:
    """The rows kept (indices into the input, in order), their texts after masking, and the report."""

    kept: list[int]
    texts: list[str]
    pairs: list[str] | None
    report: CleaningReport


def normalise(text: str) -> str:
    """Identity of a text for duplicate checks: case, accents' composition and spacing do not count."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


# ----------------------------------------------------------------------------------------------- garbage

def garbage_reason(text: str) -> str | None:
    """Why a text cannot be a real example, or None: empty, no letters, mostly non-printable, or runs of one
    repeated character with next to nothing else ("aaaaaaaaaaaa", "!!!!!!!! ok")."""
    stripped = text.strip()
    if not stripped:
        return "empty text"
    if not any(char.isalpha() for char in stripped):
        return "no letters"
    unprintable = sum(1 for char in stripped if not char.isprintable() and not char.isspace())
    if unprintable / len(stripped) > 0.3:
        return f"{unprintable} of {len(stripped)} characters are not printable"
    runs = [match.group() for match in re.finditer(r"(.)\1{4,}", stripped)]
    if runs:
        rest = re.sub(r"(.)\1{4,}", " ", stripped)
        if sum(char.isalpha() for char in rest) < 3:
            longest = max(runs, key=len)
            return f"'{longest[0]}' repeated {len(longest)} times and fewer than 3 other letters"
    return None


# ----------------------------------------------------------------------------------------------- duplicates

def _shingles(text: str) -> set[bytes]:
    key = normalise(text)
    if len(key) <= SHINGLE:
        return {key.encode()}
    return {key[i:i + SHINGLE].encode() for i in range(len(key) - SHINGLE + 1)}


def near_duplicates(texts: Sequence[str], threshold: float, seed: int = 1) -> dict[int, tuple[int, float]]:
    """{later index: (earlier index it nearly repeats, estimated Jaccard similarity)} by MinHash LSH.

    LSH proposes candidates in one pass; each is confirmed with its MinHash estimate, so the threshold holds
    for the pairs reported and not only for the banding's S-curve.
    """
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    hashes: dict[int, Any] = {}
    found: dict[int, tuple[int, float]] = {}
    for index, text in enumerate(texts):
        signature = MinHash(num_perm=NUM_PERM, seed=seed)
        signature.update_batch(list(_shingles(text)))
        best: tuple[float, int] | None = None
        for other in lsh.query(signature):
            similarity = signature.jaccard(hashes[other])
            if similarity >= threshold and (best is None or (similarity, -other) > (best[0], -best[1])):
                best = (similarity, other)
        if best is not None:
            found[index] = (best[1], best[0])
            continue  # only kept rows are matched against, so a chain of near copies points at its first
        hashes[index] = signature
        lsh.insert(index, signature)
    return found


# ----------------------------------------------------------------------------------------------- lengths

def length_bounds(counts: Sequence[int], factor: float) -> tuple[float, float]:
    """Tukey's fences: quartiles -/+ factor x IQR (an IQR of 0 counts as 1, so equal lengths flag nothing)."""
    first, third = np.percentile(np.asarray(counts, dtype=float), [25, 75])
    spread = max(third - first, 1.0)
    return first - factor * spread, third + factor * spread


# ----------------------------------------------------------------------------------------------- mislabelled

def label_issues(texts: Sequence[str], labels: Sequence[str], folds: int, seed: int = 0
                 ) -> tuple[dict[int, tuple[str, float, float]], str | None]:
    """Likely label errors: ({index: (suggested label, its probability, given label's probability)}, note).

    Confident learning (Northcutt et al., 2021) through cleanlab, on out-of-fold probabilities of a TF-IDF +
    logistic-regression classifier: cheap on a CPU, and every row is scored by a model that never saw it.
    """
    from cleanlab.filter import find_label_issues
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from threadpoolctl import threadpool_limits

    counts = Counter(labels)
    if len(counts) < 2:
        return {}, "mislabelled: needs at least two classes"
    smallest = min(counts.values())
    if smallest < 2:
        rare = sorted(name for name, count in counts.items() if count < 2)
        return {}, f"mislabelled: skipped, class(es) {', '.join(rare)} have a single row, too few to cross-validate"
    names = sorted(counts)
    target = np.asarray([names.index(label) for label in labels])
    classifier = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                               LogisticRegression(max_iter=1000, C=4.0))
    splitter = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
    # One BLAS thread: lbfgs on sparse TF-IDF gains nothing from more, and on a busy machine several threads
    # per fold made the same fit 40 times slower.
    with threadpool_limits(1):
        probabilities = cross_val_predict(classifier, list(texts), target, cv=splitter, method="predict_proba")
    issues = find_label_issues(target, probabilities, filter_by="prune_by_noise_rate")
    found = {}
    for index in np.flatnonzero(issues):
        best = int(probabilities[index].argmax())
        found[int(index)] = (names[best], float(probabilities[index, best]),
                             float(probabilities[index, target[index]]))
    return found, None


# ----------------------------------------------------------------------------------------------- the steps

def _excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT else text[:EXCERPT - 1] + "…"


def clean_texts(texts: Sequence[str], labels: Sequence[Any] | None, spec: CleanSpec, *,
                pairs: Sequence[str] | None = None, classification: bool = True,
                where: Any = None, split: str = "train", evaluation: bool = False) -> Cleaned:
    """Run the enabled steps of `spec` over rows of text (and labels, when there are any).

    `where(i)` names row i for a person (e.g. "row 3 (line 4)"). `evaluation` runs only PII masking, for
    validation and test files: dropping duplicates, outliers or hard rows from them would change what the
    scores measure.
    """
    texts = [("" if t is None else str(t)) for t in texts]
    pair_texts = [("" if t is None else str(t)) for t in pairs] if pairs is not None else None
    keys = [label_key(v) for v in labels] if labels is not None else None
    report = CleaningReport(rows_before=len(texts))
    alive = list(range(len(texts)))
    dropped: set[int] = set()

    def joined(i: int) -> str:
        return texts[i] if pair_texts is None else f"{texts[i]} \n {pair_texts[i]}"

    safe: dict[int, str] = {}  # texts with personal data masked, for the report

    def record(i: int, step: str, action: str, reason: str) -> None:
        report.findings.append(Finding(row=i, step=step, action=action, reason=reason,
                                       text=_excerpt(safe.get(i, joined(i))),
                                       label=keys[i] if keys is not None else None,
                                       where=where(i) if where else f"row {i + 1}", split=split))
        if action == "drop":
            dropped.add(i)

    def active(step: str, action: str) -> bool:
        if action == "off" or (evaluation and step != "pii"):
            return False
        report.steps[step] = action
        return True

    if active("garbage", spec.garbage):
        for i in alive:
            reason = garbage_reason(joined(i))
            if reason:
                record(i, "garbage", spec.garbage, reason)
        alive = [i for i in alive if i not in dropped]

    if active("pii", spec.pii):
        for i in alive:
            matches = find_pii(texts[i], spec.pii_kinds, spec.pii_names)
            pair_matches = find_pii(pair_texts[i], spec.pii_kinds, spec.pii_names) if pair_texts else []
            if not matches and not pair_matches:
                continue
            kinds = Counter(m.kind for m in matches + pair_matches)
            reason = "personal data: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
            # The report never repeats what it found: its excerpt is masked whatever the action; the rows
            # themselves change only under mask.
            safe[i] = mask_pii(texts[i], matches)
            if pair_texts is not None:
                safe[i] += " \n " + mask_pii(pair_texts[i], pair_matches)
            if spec.pii == "mask":
                texts[i] = mask_pii(texts[i], matches)
                if pair_texts is not None:
                    pair_texts[i] = mask_pii(pair_texts[i], pair_matches)
            record(i, "pii", spec.pii, reason)
        alive = [i for i in alive if i not in dropped]

    if keys is not None and classification and active("conflicting_labels", spec.conflicting_labels):
        groups: dict[str, list[int]] = defaultdict(list)
        for i in alive:
            groups[normalise(joined(i))].append(i)
        for members in groups.values():
            votes = Counter(keys[i] for i in members)
            if len(votes) < 2:
                continue
            ranked = votes.most_common()
            majority = ranked[0][0] if ranked[0][1] > ranked[1][1] else None
            spread = ", ".join(f"{n}× {label}" for label, n in ranked)
            for i in members:
                if keys[i] != majority:
                    verdict = f"majority label is {majority}" if majority is not None else "no majority label"
                    record(i, "conflicting_labels", spec.conflicting_labels,
                           f"the same text has different labels ({spread}); {verdict}")
        alive = [i for i in alive if i not in dropped]

    if active("duplicates", spec.duplicates):
        first: dict[str, int] = {}
        for i in alive:
            key = normalise(joined(i))
            if key in first:
                record(i, "duplicates", spec.duplicates, f"duplicate of {_name(where, first[key])}")
            else:
                first[key] = i
        alive = [i for i in alive if i not in dropped]

    if active("near_duplicates", spec.near_duplicates):
        exact = {f.row for f in report.findings if f.step == "duplicates"}
        candidates = [i for i in alive if i not in exact]
        for later, (earlier, similarity) in near_duplicates([joined(i) for i in candidates],
                                                            spec.near_duplicate_threshold).items():
            record(candidates[later], "near_duplicates", spec.near_duplicates,
                   f"near duplicate (similarity {similarity:.2f}) of {_name(where, candidates[earlier])}")
        alive = [i for i in alive if i not in dropped]

    if active("length_outliers", spec.length_outliers):
        if len(alive) < MIN_ROWS_FOR_LENGTH:
            report.notes.append(f"length_outliers: skipped, {len(alive)} rows are too few for quartiles")
        else:
            words = [len(joined(i).split()) for i in alive]
            chars = [len(joined(i)) for i in alive]
            word_low, word_high = length_bounds(words, spec.length_iqr_factor)
            char_low, char_high = length_bounds(chars, spec.length_iqr_factor)
            for i, n_words, n_chars in zip(alive, words, chars, strict=True):
                if not word_low <= n_words <= word_high:
                    record(i, "length_outliers", spec.length_outliers,
                           f"{n_words} words, outside {max(word_low, 0):.0f}–{word_high:.0f}")
                elif not char_low <= n_chars <= char_high:
                    record(i, "length_outliers", spec.length_outliers,
                           f"{n_chars} characters, outside {max(char_low, 0):.0f}–{char_high:.0f}")
            alive = [i for i in alive if i not in dropped]

    if active("toxicity", spec.toxicity):
        for i in alive:
            found = profanity_in(joined(i))
            if found:
                shown = ", ".join(dict.fromkeys(w.lower() for w in found))
                record(i, "toxicity", spec.toxicity, f"profanity word list: {shown}")
        alive = [i for i in alive if i not in dropped]

    if keys is not None and classification and active("mislabelled", spec.mislabelled):
        issues, note = label_issues([joined(i) for i in alive], [keys[i] for i in alive], spec.mislabelled_folds)
        if note:
            report.notes.append(note)
        for position, (suggested, p_suggested, p_given) in sorted(issues.items()):
            i = alive[position]
            record(i, "mislabelled", spec.mislabelled,
                   f"label {keys[i]} looks wrong: a cross-validated classifier gives it {p_given:.2f} and "
                   f"{suggested} {p_suggested:.2f}")
        alive = [i for i in alive if i not in dropped]

    report.rows_after = len(alive)
    return Cleaned(alive, [texts[i] for i in alive], [pair_texts[i] for i in alive] if pair_texts else None,
                   report)


def label_key(value: Any) -> str:
    """Labels compared as text, so 1, 1.0 and "1" in one column are the same class."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float) and math.isnan(value):
        return ""
    return "" if value is None else str(value).strip()


def _name(where: Any, index: int) -> str:
    return where(index) if where else f"row {index + 1}"


def clean_dataset(dataset: Any, spec: CleanSpec, text_column: str, label_column: str | None, *,
                  pair_column: str | None = None, task: str = "classification", path: str = "",
                  split: str = "train", evaluation: bool = False) -> tuple[Any, CleaningReport]:
    """A `datasets.Dataset` with dropped rows removed and masked texts written back, and the report."""
    from tuneforge.data.loading import row_label

    if task == "token-classification":
        raise TuneforgeError("clean: works on text rows; token-classification data is a word sequence per row",
                             fix="set clean.enabled: false for token-classification recipes")
    labels = dataset[label_column] if label_column and label_column in dataset.column_names else None
    cleaned = clean_texts(dataset[text_column], labels, spec,
                          pairs=dataset[pair_column] if pair_column else None,
                          classification=task in ("classification", "multilabel"),
                          where=(lambda i: row_label(path, i)) if path else None, split=split, evaluation=evaluation)
    if cleaned.report.findings:
        result = dataset.select(cleaned.kept)
        masked = any(f.step == "pii" and f.action == "mask" for f in cleaned.report.findings)
        if masked:
            result = result.remove_columns(text_column).add_column(text_column, cleaned.texts)
            if pair_column and cleaned.pairs is not None:
                result = result.remove_columns(pair_column).add_column(pair_column, cleaned.pairs)
            result = result.select_columns(dataset.column_names)
        return result, cleaned.report
    return dataset, cleaned.report


# ----------------------------------------------------------------------------------------------- a recipe's data

def drops_empty_texts(recipe: Any) -> bool:
    """Whether the recipe's cleaning removes empty training texts, which are then findings, not data errors."""
    return recipe.clean.enabled and recipe.clean.garbage == "drop" and recipe.task != "token-classification"


def clean_loaded(loaded: dict[str, tuple[str, Any]], recipe: Any
                 ) -> tuple[dict[str, tuple[str, Any]], dict[str, Any], list[Any]]:
    """The recipe's `clean:` step on loaded splits: (cleaned splits, data report per split, warnings).

    The training file gets every enabled step; validation and test files only PII masking (see clean_texts).
    A class that cleaning leaves with too few rows is a data error naming the step that removed them.
    """
    from tuneforge.data import validation as checks

    spec, data = recipe.clean, recipe.data
    cleaned: dict[str, tuple[str, Any]] = {}
    reports: dict[str, Any] = {}
    warnings: list[Problem] = []
    for role, (path, dataset) in loaded.items():
        result, report = clean_dataset(dataset, spec, data.text_column, data.label_column,
                                       pair_column=data.text_pair_column, task=recipe.task, path=path, split=role,
                                       evaluation=role != "train")
        cleaned[role] = (path, result)
        reports[role] = report.to_json()
        if report.findings:
            warnings.append(Problem(where=f"{path} (clean)", severity="warning", message=describe(report),
                                    fix="each row and its reason is in the run's data_report.json; change the "
                                        "clean: section to keep, flag or mask instead"))
    if recipe.task == "classification" and "train" in cleaned:
        path, train = cleaned["train"]
        counts = Counter(checks.label_key(v) for v in train[data.label_column] if not checks.is_blank(v))
        before = Counter(checks.label_key(v) for v in loaded["train"][1][data.label_column]
                         if not checks.is_blank(v))
        counts.update({name: 0 for name in before if name not in counts})
        problems = checks.check_class_counts(path, data.label_column, counts, data.min_examples_per_class)
        if [p for p in problems if p.severity == "error"]:
            raise DataError([Problem(where=p.where, message=f"after cleaning, {p.message}",
                                     fix=f"{p.fix}; or set the clean: steps that removed its rows to flag",
                                     severity=p.severity) for p in problems])
    return cleaned, reports, warnings


def describe(report: CleaningReport) -> str:
    """One line: 'dropped 3 of 120 rows (2 duplicates, 1 garbage); flagged 4 (4 toxicity); masked 1 (1 pii)'."""
    parts = []
    for action, verb in (("drop", "dropped"), ("flag", "flagged"), ("mask", "masked")):
        by_step = Counter(f.step for f in report.findings if f.action == action)
        if by_step:
            detail = ", ".join(f"{n} {step.replace('_', ' ')}" for step, n in by_step.most_common())
            total = sum(by_step.values())
            parts.append(f"{verb} {total}{f' of {report.rows_before} rows' if action == 'drop' else ''} ({detail})")
    return "clean: " + "; ".join(parts)
