"""Question definitions and the answers to them.

A project's `questions` is a list of definitions:

    {"name": "quality", "kind": "rating", "title": "How good is it?", "scale": 5,
     "aspects": ["helpfulness", "honesty"], "required": true}
    {"name": "order", "kind": "ranking", "allow_ties": true, "top_k": null}
    {"name": "better", "kind": "pairwise", "strengths": true}
    {"name": "ok", "kind": "binary", "reason": true}
    {"name": "fix", "kind": "edit"}
    {"name": "notes", "kind": "comment"}

Answers (the `answers` object of a submission, keyed by question name; ids are response ids):

    rating    [{"response": 7, "value": 4, "aspect": "helpfulness"}, ...]  one per response x aspect
    ranking   {"ranking": [[7], [9, 8]], "all_bad": false}  best first; a group is a tie;
              responses left out are unranked (partial top-k)
    pairwise  {"choice": "a"|"b"|"tie", "strength": null|"slight"|"clear"|"much"}
              a and b are the first two responses in the order this annotator was shown
    binary    [{"response": 7, "label": true, "reason": ""}, ...]  one per response
    edit      {"response": 7, "text": "the rewrite"}  (unchanged text: nothing is written)
    comment   {"text": "..."}

`feedback_for_answer` turns an answer into corpus Feedback payloads, each checked with
corpus.feedback.validate_payload; any problem raises PayloadError naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from corpus.feedback import PAIRWISE_STRENGTHS, PayloadError, validate_payload

KINDS = ("rating", "ranking", "pairwise", "binary", "edit", "comment")
# Fewest responses an item needs for a question of this kind.
MIN_RESPONSES = {"rating": 1, "ranking": 2, "pairwise": 2, "binary": 1, "edit": 1, "comment": 0}
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
REQUIRED_BY_DEFAULT = {"rating": True, "ranking": True, "pairwise": True, "binary": True,
                       "edit": False, "comment": False}


def _flag(q: dict, key: str, default: bool, where: str) -> bool:
    value = q.get(key, default)
    if not isinstance(value, bool):
        raise PayloadError(f"{where}.{key}", "must be true or false")
    return value


def normalise_questions(questions) -> list[dict]:
    """Check question definitions and fill in defaults. Raises PayloadError."""
    if not isinstance(questions, list) or not questions:
        raise PayloadError("questions", "must be a non-empty list of question definitions")
    out, names = [], set()
    for index, q in enumerate(questions):
        where = f"questions[{index}]"
        if not isinstance(q, dict):
            raise PayloadError(where, "must be an object")
        kind = q.get("kind")
        if kind not in KINDS:
            raise PayloadError(f"{where}.kind", f"must be one of {', '.join(KINDS)}")
        name = q.get("name", kind)
        if not isinstance(name, str) or not NAME.match(name):
            raise PayloadError(f"{where}.name", "must be 1-64 lower-case letters, digits or _")
        if name in names:
            raise PayloadError(f"{where}.name", f"{name!r} is used twice")
        names.add(name)
        title = q.get("title", "")
        if not isinstance(title, str) or len(title) > 500:
            raise PayloadError(f"{where}.title", "must be a string of at most 500 characters")
        allowed = {"name", "kind", "title", "required", "help"}
        clean = {"name": name, "kind": kind, "title": title or name.replace("_", " ").capitalize(),
                 "required": _flag(q, "required", REQUIRED_BY_DEFAULT[kind], where)}
        help_text = q.get("help", "")
        if not isinstance(help_text, str):
            raise PayloadError(f"{where}.help", "must be a string")
        clean["help"] = help_text
        if kind == "rating":
            allowed |= {"scale", "aspects", "labels"}
            scale = q.get("scale", 5)
            if not isinstance(scale, int) or isinstance(scale, bool) or not 2 <= scale <= 10:
                raise PayloadError(f"{where}.scale", "must be an integer from 2 to 10 (Likert 1..N)")
            aspects = q.get("aspects") or ["overall"]
            if (not isinstance(aspects, list) or len(aspects) > 10
                    or not all(isinstance(a, str) and NAME.match(a) for a in aspects)
                    or len(set(aspects)) != len(aspects)):
                raise PayloadError(f"{where}.aspects", "must be up to 10 distinct lower-case names")
            labels = q.get("labels") or []
            if not isinstance(labels, list) or (labels and len(labels) != scale) or not all(
                    isinstance(label, str) for label in labels):
                raise PayloadError(f"{where}.labels", f"must be {scale} strings, one per point")
            clean.update(scale=scale, aspects=aspects, labels=labels)
        elif kind == "ranking":
            allowed |= {"allow_ties", "top_k"}
            top_k = q.get("top_k")
            if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
                raise PayloadError(f"{where}.top_k", "must be null or a positive integer")
            clean.update(allow_ties=_flag(q, "allow_ties", True, where), top_k=top_k)
        elif kind == "pairwise":
            allowed |= {"strengths"}
            clean["strengths"] = _flag(q, "strengths", True, where)
        elif kind == "binary":
            allowed |= {"reason"}
            clean["reason"] = _flag(q, "reason", True, where)
        unknown = sorted(set(q) - allowed)
        if unknown:
            raise PayloadError(f"{where}.{unknown[0]}", "unknown setting for a " + kind + " question")
        out.append(clean)
    return out


def min_responses(questions: list[dict]) -> int:
    return max(MIN_RESPONSES[q["kind"]] for q in questions)


@dataclass
class Written:
    """What one answer turns into: Feedback payloads, a rewrite, a comment."""

    feedback: list[tuple[str, dict]] = field(default_factory=list)   # (kind, payload)
    edit: tuple[int, str] | None = None                              # (original id, new text)
    comment: str | None = None


def _shaped(value, kind, where):
    if not isinstance(value, kind):
        raise PayloadError(where, f"must be {'a list' if kind is list else 'an object'}")
    return value


def feedback_for_answer(q: dict, answer, shown: list[int], where: str) -> Written:
    """Validate `answer` to question `q` for an item showing responses `shown` (in order)."""
    kind, ids = q["kind"], set(shown)
    out = Written()

    def check(fb_kind: str, payload: dict, sub: str = ""):
        try:
            return validate_payload(fb_kind, payload, ids)
        except PayloadError as exc:
            raise PayloadError(f"{where}{sub}.{exc.field}", exc.reason) from None

    if kind == "rating":
        cells = _shaped(answer, list, where)
        seen = set()
        for index, cell in enumerate(cells):
            cell = _shaped(cell, dict, f"{where}[{index}]")
            aspect = cell.get("aspect", q["aspects"][0])
            if aspect not in q["aspects"]:
                raise PayloadError(f"{where}[{index}].aspect", f"must be one of {', '.join(q['aspects'])}")
            value = cell.get("value")
            if not isinstance(value, int) or isinstance(value, bool):
                raise PayloadError(f"{where}[{index}].value", f"must be an integer from 1 to {q['scale']}")
            payload = check("rating", {**cell, "aspect": aspect, "scale_min": 1, "scale_max": q["scale"]},
                            f"[{index}]")
            key = (payload["response"], aspect)
            if key in seen:
                raise PayloadError(f"{where}[{index}]", f"response {key[0]} is rated twice on {aspect}")
            seen.add(key)
            out.feedback.append(("rating", payload))
        missing = [(r, a) for r in shown for a in q["aspects"] if (r, a) not in seen]
        if missing:
            raise PayloadError(where, f"rate every response on every aspect; missing response "
                                      f"{missing[0][0]} on {missing[0][1]}")
    elif kind == "ranking":
        answer = _shaped(answer, dict, where)
        payload = check("ranking", answer)
        groups = payload["ranking"]
        if not q["allow_ties"] and any(len(g) > 1 for g in groups):
            raise PayloadError(f"{where}.ranking", "this question does not allow ties")
        ranked = sum(len(g) for g in groups)
        needed = min(q["top_k"] or len(shown), len(shown))
        if not payload["all_bad"] and ranked < needed:
            raise PayloadError(f"{where}.ranking", f"rank at least {needed} responses (or set all_bad)")
        out.feedback.append(("ranking", payload))
    elif kind == "pairwise":
        answer = _shaped(answer, dict, where)
        unknown = sorted(set(answer) - {"choice", "strength"})
        if unknown:
            raise PayloadError(f"{where}.{unknown[0]}", "unknown field; allowed: choice, strength")
        if answer.get("strength") is not None and not q["strengths"]:
            raise PayloadError(f"{where}.strength", "this question asks for no strength")
        if answer.get("strength") is not None and answer.get("strength") not in PAIRWISE_STRENGTHS:
            raise PayloadError(f"{where}.strength", f"must be null or one of {', '.join(PAIRWISE_STRENGTHS)}")
        payload = check("pairwise", {"a": shown[0], "b": shown[1], **answer})
        out.feedback.append(("pairwise", payload))
    elif kind == "binary":
        cells = _shaped(answer, list, where)
        seen = set()
        for index, cell in enumerate(cells):
            cell = _shaped(cell, dict, f"{where}[{index}]")
            payload = check("binary", cell, f"[{index}]")
            if payload["response"] in seen:
                raise PayloadError(f"{where}[{index}].response", "is labelled twice")
            seen.add(payload["response"])
            out.feedback.append(("binary", payload))
        if q["required"] and seen != ids:
            raise PayloadError(where, "give every response a thumbs up or down")
    elif kind == "edit":
        answer = _shaped(answer, dict, where)
        unknown = sorted(set(answer) - {"response", "text"})
        if unknown:
            raise PayloadError(f"{where}.{unknown[0]}", "unknown field; allowed: response, text")
        response = answer.get("response")
        if not isinstance(response, int) or isinstance(response, bool) or response not in ids:
            raise PayloadError(f"{where}.response", "must be one of the item's responses")
        text = answer.get("text")
        if not isinstance(text, str) or not text.strip():
            raise PayloadError(f"{where}.text", "must be the rewritten response (non-empty text)")
        if len(text) > 100_000:
            raise PayloadError(f"{where}.text", "is longer than 100,000 characters")
        out.edit = (response, text)
    elif kind == "comment":
        if isinstance(answer, dict):
            unknown = sorted(set(answer) - {"text"})
            if unknown:
                raise PayloadError(f"{where}.{unknown[0]}", "unknown field; allowed: text")
            answer = answer.get("text")
        if not isinstance(answer, str):
            raise PayloadError(f"{where}.text", "must be a string")
        if len(answer) > 20_000:
            raise PayloadError(f"{where}.text", "is longer than 20,000 characters")
        out.comment = answer if answer.strip() else None
    if q["required"] and kind in ("edit", "comment") and out.edit is None and out.comment is None:
        raise PayloadError(where, "this question is required")
    return out


def check_answers(questions: list[dict], answers, shown: list[int]) -> dict[str, Written]:
    """All answers of one submission, checked before anything is written."""
    if not isinstance(answers, dict):
        raise PayloadError("answers", "must be an object keyed by question name")
    names = {q["name"] for q in questions}
    unknown = sorted(set(answers) - names)
    if unknown:
        raise PayloadError(f"answers.{unknown[0]}", "is not a question of this project")
    out = {}
    for q in questions:
        answer = answers.get(q["name"])
        if answer is None or answer == [] or answer == "":
            if q["required"]:
                raise PayloadError(f"answers.{q['name']}", "this question is required")
            continue
        out[q["name"]] = feedback_for_answer(q, answer, shown, f"answers.{q['name']}")
    return out
