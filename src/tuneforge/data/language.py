"""A rough guess of the language of a set of texts: the writing system first, then common function words.

This is a heuristic, not a language identifier: it knows the scripts below and about twenty Latin-script
languages by their most frequent words, needs a few sentences to be sure, and says "unknown" rather than guess
when two languages score alike (Spanish and Portuguese, Indonesian and Malay, closely related dialects). It is
enough to tell whether a model must be multilingual; pass the language explicitly when it matters.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tuneforge.errors import Problem

# (first, last code point) -> language most texts in that script are in.
SCRIPTS: tuple[tuple[int, int, str], ...] = (
    (0x0370, 0x03FF, "el"), (0x0400, 0x04FF, "ru"), (0x0530, 0x058F, "hy"), (0x0590, 0x05FF, "he"),
    (0x0600, 0x06FF, "ar"), (0x0750, 0x077F, "ar"), (0x0900, 0x097F, "hi"), (0x0980, 0x09FF, "bn"),
    (0x0A00, 0x0A7F, "pa"), (0x0A80, 0x0AFF, "gu"), (0x0B80, 0x0BFF, "ta"), (0x0C00, 0x0C7F, "te"),
    (0x0C80, 0x0CFF, "kn"), (0x0D00, 0x0D7F, "ml"), (0x0D80, 0x0DFF, "si"), (0x0E00, 0x0E7F, "th"),
    (0x0E80, 0x0EFF, "lo"), (0x1000, 0x109F, "my"), (0x10A0, 0x10FF, "ka"), (0x1200, 0x137F, "am"),
    (0x1780, 0x17FF, "km"), (0x3040, 0x30FF, "ja"), (0x4E00, 0x9FFF, "zh"), (0xAC00, 0xD7AF, "ko"),
)
# Letters that set a language apart from the main one of its script.
SCRIPT_VARIANTS = {"ru": (("uk", "іїєґ"),), "ar": (("ur", "ٹڈڑےں"), ("fa", "پچژگ"))}
STOPWORDS: dict[str, frozenset[str]] = {code: frozenset(words.split()) for code, words in {
    "en": "the and of to is in it that was for with this you are not on have but be they very",
    "fr": "le la les des et est une du que pas pour dans qui sur je il ce avec très mais",
    "es": "el los las que y en una es por con para no se del lo muy pero como más",
    "pt": "os que do da em um uma não para com por é mais muito se foi mas dos",
    "de": "der die das und ist nicht ein eine ich zu den mit sich auf auch dem sie war für",
    "it": "il di che è per non del della sono con mi ma gli molto questo anche",
    "nl": "het een en van is niet dat ik op te met voor zijn maar ook er dit wat heel",
    "sv": "och att det som är på av för inte med jag den till har var ett om men så",
    "pl": "w nie na to się jest z że do jak ale co tak po od bardzo",
    "ro": "și de la nu în este cu pe că mai din care foarte pentru sunt dar să",
    "tr": "ve bir bu da çok için ile ne değil ama daha gibi olarak var ben şey yok",
    "vi": "và là của có không một những được cho này rất với các đã người tôi trong thì cũng",
    "id": "yang dan di ini itu tidak dengan untuk ada saya dari ke akan juga sangat tapi karena sudah bisa",
    "jv": "lan ing iku ora aku sing karo wis kanggo ana iki uga banget sampeyan kowe dadi mung",
    "su": "jeung nu teu ka abdi ieu éta aya pisan sareng kana urang geus keur mah oge kitu",
    "sw": "na ya wa kwa ni za katika hii kama lakini sana hiyo pia kuwa au cha vya huo hilo",
    "ha": "da ba cikin wannan ga kuma amma shi ita su za ne ce mai daga sosai",
    "yo": "ati ni ti ko si fun pe won ninu naa kan lati mo yii sugbon gan bi je",
    "so": "iyo waa ka ku oo ee aan ah wax ayaa ma sida laga kale uu waxa baa",
    "tl": "ang ng sa mga ako hindi ito siya ko ka lang po din rin kung pero naman",
}.items()}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
MIN_SCORE = 0.08  # share of words that must be function words of the winner
MARGIN = 1.3  # the winner must beat the runner-up by this factor


@dataclass(frozen=True)
class LanguageGuess:
    code: str | None  # ISO 639-1 code; None when unsure
    confidence: float  # share of letters in the script, or of words that are the language's function words
    method: str  # "script", "function words" or "unsure"
    scores: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        if self.code is None:
            return "unknown (no script or function-word match was clear)"
        return f"{self.code} ({self.method}, {self.confidence:.0%})"


def _script_of(char: str) -> str | None:
    point = ord(char)
    for first, last, code in SCRIPTS:
        if first <= point <= last:
            return code
    return None


def _script_guess(text: str) -> LanguageGuess | None:
    letters = [char for char in text if char.isalpha()]
    if not letters:
        return None
    scripts = Counter(_script_of(char) for char in letters)
    if scripts.get("ja"):  # kana with kanji is Japanese, kanji alone Chinese
        scripts["ja"] += scripts.pop("zh", 0)
    code, count = max(scripts.items(), key=lambda item: item[1])
    share = count / len(letters)
    if code is None or share < 0.5:
        return None
    for variant, marks in SCRIPT_VARIANTS.get(code, ()):
        if any(mark in text for mark in marks):
            code = variant
            break
    return LanguageGuess(code, share, "script", {code: share})


def detect_language(texts: Iterable[str], limit: int = 500) -> LanguageGuess:
    """The language of most of `texts` (the first `limit`), or code None when the heuristic is unsure."""
    sample = [str(text) for _, text in zip(range(limit), texts, strict=False) if text]
    joined = " ".join(sample)
    by_script = _script_guess(joined)
    if by_script is not None:
        return by_script
    words = [word.lower() for word in _WORD.findall(joined)]
    if not words:
        return LanguageGuess(None, 0.0, "unsure")
    counts = Counter(words)
    scores = {code: sum(counts[word] for word in vocabulary) / len(words) for code, vocabulary in STOPWORDS.items()}
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < MIN_SCORE or top < MARGIN * second:
        return LanguageGuess(None, top, "unsure", dict(ranked[:3]))
    return LanguageGuess(best, top, "function words", dict(ranked[:3]))


def language_mismatch(expected: str, path: str, texts: Iterable[str]) -> list[Problem]:
    """A warning when the texts look like another language than the recipe says (e.g. a file mix-up, or a
    multilingual model needed); silent when the heuristic is unsure or the language is one it does not know."""
    guess = detect_language(texts)
    expected = expected.strip().lower()
    known = {code for _, _, code in SCRIPTS} | set(STOPWORDS) | {v for vs in SCRIPT_VARIANTS.values() for v, _ in vs}
    if guess.code is None or expected not in known or guess.code == expected:
        return []
    return [Problem(where=path, severity="warning",
                    message=f"data.language is '{expected}' but the texts look like '{guess.code}' "
                            f"({guess.method}, {guess.confidence:.0%})",
                    fix="check that this is the right file, fix data.language, or choose a model that covers the "
                        "texts' language (`tuneforge recommend --language ...`)")]
