"""Rule-based rewards (for RLHF) and rule judges (for the generation evaluation).

A rule is written as `name` or `name:argument`, e.g. `max_sentences:3` ("answer in at most
three sentences"). As a reward it scores one completion in [0, 1]; as a judge it compares two
answers to one prompt and says which follows the rule better.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?]+(?:\s+|$)")


def count_sentences(text: str) -> int:
    text = text.strip()
    if not text:
        return 0
    pieces = [p for p in _SENTENCE_END.split(text) if p.strip()]
    return len(pieces)


def count_words(text: str) -> int:
    return len(text.split())


def _max_sentences(text: str, limit: int) -> float:
    n = count_sentences(text)
    if n == 0:
        return 0.0
    return 1.0 if n <= limit else limit / n


def _max_words(text: str, limit: int) -> float:
    n = count_words(text)
    if n == 0:
        return 0.0
    return 1.0 if n <= limit else limit / n


def _no_apology(text: str, _arg=None) -> float:
    return 0.0 if re.search(r"\b(sorry|apologi[sz]e|as an ai)\b", text, re.I) else 1.0


# name -> (scorer(text, arg) -> [0, 1], default argument, argument parser)
_RULES = {
    "max_sentences": (_max_sentences, 3, int),
    "max_words": (_max_words, 50, int),
    "no_apology": (_no_apology, None, None),
}


def parse_judge_rule(rule: str):
    """`name[:arg]` -> (scorer, arg). ValueError names the known rules."""
    name, _, raw = rule.partition(":")
    if name not in _RULES:
        raise ValueError(f"unknown rule {name!r}; known: {', '.join(sorted(_RULES))} "
                         "(e.g. max_sentences:3)")
    scorer, default, parse = _RULES[name]
    if raw:
        if parse is None:
            raise ValueError(f"rule {name} takes no argument")
        try:
            arg = parse(raw)
        except ValueError:
            raise ValueError(f"rule {name} needs a number, got {raw!r}") from None
        if arg < 1:
            raise ValueError(f"rule {name} needs a positive number")
    else:
        arg = default
    return scorer, arg


def rule_score(rule: str, text: str) -> float:
    scorer, arg = parse_judge_rule(rule)
    return scorer(text, arg)


def judge_pair(rule: str, first: str, second: str) -> str:
    """'first', 'second' or 'tie': which answer follows the rule better."""
    a, b = rule_score(rule, first), rule_score(rule, second)
    if abs(a - b) < 1e-9:
        return "tie"
    return "first" if a > b else "second"


def _completion_text(completion) -> str:
    # GRPO/RLOO pass conversational completions as [{"role": "assistant", "content": ...}].
    if isinstance(completion, list):
        return " ".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def make_reward_function(rule: str):
    """A TRL reward function (completions -> list of floats) for a rule."""
    parse_judge_rule(rule)  # fail early on a bad rule

    def reward(completions, **_kwargs):
        return [rule_score(rule, _completion_text(c)) for c in completions]

    reward.__name__ = "rule_" + re.sub(r"\W", "_", rule)
    return reward


def is_known_rule(rule: str) -> bool:
    try:
        parse_judge_rule(rule)
    except ValueError:
        return False
    return True
