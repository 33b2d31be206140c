"""Quality checks on one text: each returns a (rule, reason) when the text fails, else None.

The language check is a stop-word heuristic for English: no light language-identification
package is installed (fastText/lingua models would be a download), and a prompt in English
carries enough function words that their share separates it from code, tables and other
languages well enough to flag, not to judge.
"""

from __future__ import annotations

import re

DEFAULT_REFUSALS = (
    "as an ai language model",
    "as a large language model",
    "as an ai assistant, i",
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "i cannot fulfill",
    "i can't assist with",
    "i cannot assist with",
    "i'm unable to help with",
    "i am not able to provide",
    "my knowledge cutoff",
    "i don't have personal opinions",
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
ENGLISH_STOPWORDS = frozenset("""
a about above after again all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has
have having he her here hers him his how i if in into is it its itself just me more most my
no nor not now of off on once only or other our ours out over own same she should so some such
than that the their theirs them then there these they this those through to too under until up
very was we were what when where which while who whom why will with would you your yours
""".split())


def length_violation(text: str, min_chars: int | None, max_chars: int | None):
    size = len(text.strip())
    if min_chars is not None and size < min_chars:
        return "too_short", f"{size} characters, fewer than the minimum {min_chars}"
    if max_chars is not None and size > max_chars:
        return "too_long", f"{size} characters, more than the maximum {max_chars}"
    return None


def repetition_ratio(text: str, n: int) -> float:
    """Share of word n-grams that repeat an earlier one (0 = none, near 1 = a loop)."""
    words = text.lower().split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 4:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def repetition_violation(text: str, n: int, max_ratio: float):
    ratio = repetition_ratio(text, n)
    if ratio > max_ratio:
        return "repetitive", f"{ratio:.0%} of its word {n}-grams repeat (maximum {max_ratio:.0%})"
    return None


def encoding_violation(text: str):
    if "\ufffd" in text:
        return "invalid_utf8", "contains U+FFFD replacement characters (text decoded from invalid UTF-8)"
    match = _CONTROL.search(text)
    if match:
        return "control_characters", f"contains control character U+{ord(match.group()):04X}"
    return None


def phrase_violation(text: str, phrases: list[str]):
    lowered = " ".join(text.lower().replace("\u2019", "'").split())
    for phrase in phrases:
        if phrase and phrase.lower() in lowered:
            return "refusal_or_boilerplate", f"contains the phrase {phrase!r}"
    return None


def truncation_violation(text: str, finish_reason: str | None):
    if finish_reason == "length":
        return "truncated", "generation stopped at the token limit (finish_reason=length)"
    if text.count("```") % 2 == 1:
        return "truncated", "ends inside an unclosed code block"
    return None


def english_score(text: str) -> float | None:
    words = _WORD.findall(text.lower())
    if len(words) < 8:
        return None  # too short to tell
    return sum(w in ENGLISH_STOPWORDS for w in words) / len(words)


def language_violation(text: str, language: str, min_score: float):
    if language != "en":
        return None
    score = english_score(text)
    if score is not None and score < min_score:
        return "language", f"does not look like English (stop-word share {score:.2f} < {min_score})"
    return None
