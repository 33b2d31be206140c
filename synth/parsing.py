"""Tolerant parsing of model replies.

Small models wrap JSON in prose or code fences, forget quotes, or answer in "Key: value"
lines. These parsers try the strict reading first and then the common deviations; when
nothing fits they raise UnparseableReply with a reason, and the caller stores the raw text
(synth.DiscardedOutput) instead of losing it.
"""

from __future__ import annotations

import json
import re


class UnparseableReply(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def _balanced_objects(text: str) -> list[str]:
    """Every top-level {...} span in the text, in order (braces inside strings respected)."""
    spans, depth, start, in_string, escaped = [], 0, None, False, False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"' and depth:
            in_string = True
        elif char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                spans.append(text[start:index + 1])
    return spans


def parse_json_object(text: str) -> dict:
    """The first JSON object in a reply: bare, fenced, or inside prose; trailing commas and
    single quotes forgiven."""
    if not text or not text.strip():
        raise UnparseableReply("empty reply")
    candidates = [text.strip()]
    candidates += [block.strip() for block in _FENCE.findall(text)]
    candidates += _balanced_objects(text)
    for candidate in candidates:
        for variant in (candidate, re.sub(r",\s*([}\]])", r"\1", candidate)):
            try:
                value = json.loads(variant)
            except (json.JSONDecodeError, ValueError):
                continue
            if isinstance(value, dict):
                return value
        if candidate.startswith("{") and "'" in candidate and '"' not in candidate:
            try:
                value = json.loads(candidate.replace("'", '"'))
            except (json.JSONDecodeError, ValueError):
                continue
            if isinstance(value, dict):
                return value
    if "{" not in text:
        raise UnparseableReply("no JSON object in the reply")
    raise UnparseableReply("the reply's JSON object is malformed")


def labelled_fields(text: str, labels: list[str]) -> dict[str, str]:
    """Read "Label: value" sections (value runs until the next label), case-insensitive."""
    pattern = re.compile(
        r"^\W*(" + "|".join(re.escape(label) for label in labels) + r")\W*?\s*[:：]\s*",
        re.IGNORECASE | re.MULTILINE,
    )
    marks = list(pattern.finditer(text))
    fields = {}
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(text)
        name = mark.group(1).lower()
        fields.setdefault(name, text[mark.end():end].strip())
    return fields


def parse_fields(text: str, names: list[str]) -> dict[str, str]:
    """Fields by name from a JSON object or from "Name: value" lines; every name required."""
    try:
        obj = parse_json_object(text)
        lowered = {str(k).lower(): v for k, v in obj.items()}
        found = {name: lowered.get(name) for name in names}
        if all(isinstance(value, (str, int, float)) and str(value).strip() for value in found.values()):
            return {name: str(value).strip() for name, value in found.items()}
    except UnparseableReply:
        pass
    fields = labelled_fields(text, names)
    missing = [name for name in names if not fields.get(name)]
    if missing:
        raise UnparseableReply(f"missing {', '.join(missing)} (expected JSON or 'Name: value' lines)")
    return {name: fields[name] for name in names}


_RATING = re.compile(r"(?:rating|score)\W{0,3}\s*(?:is\s*)?[:=]?\s*\**\s*([1-5])(?:\s*/\s*5|\s*out of 5)?\b",
                     re.IGNORECASE)


def parse_rating(text: str, scale_min: int = 1, scale_max: int = 5) -> tuple[int, str]:
    """(rating, rationale) from `{"rating": 4, "rationale": ...}`, `Rating: 4\\nRationale: ...`
    (UltraFeedback's format), or a reply that is only the number."""
    if not text or not text.strip():
        raise UnparseableReply("empty reply")
    try:
        obj = {str(k).lower(): v for k, v in parse_json_object(text).items()}
        value = obj.get("rating", obj.get("score"))
        if isinstance(value, str) and value.strip().isdecimal():
            value = int(value.strip())
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if scale_min <= value <= scale_max and float(value).is_integer():
                return int(value), str(obj.get("rationale", "") or "").strip()
            raise UnparseableReply(f"rating {value} is outside {scale_min}-{scale_max}")
    except UnparseableReply as exc:
        if "outside" in exc.reason:
            raise
    match = _RATING.search(text)
    if match:
        value = int(match.group(1))
        if scale_min <= value <= scale_max:
            rationale = labelled_fields(text, ["rationale"]).get("rationale", "")
            return value, rationale
    stripped = text.strip().strip(".*")
    if stripped.isdecimal() and scale_min <= int(stripped) <= scale_max:
        return int(stripped), ""
    raise UnparseableReply(f"no rating {scale_min}-{scale_max} found (expected 'Rating: N')")


_CHOICE = re.compile(r"\b(?:answer|choice|better|winner|verdict|preferred)\b\W{0,5}\s*(?:is\s*)?[:=]?\s*"
                     r"\**\s*(?:response\s*|output\s*)?\(?([AB12]|tie)\)?\b", re.IGNORECASE)


def parse_pairwise_choice(text: str) -> str:
    """"a", "b" or "tie" from a judge's reply (JSON {"choice": ...}, "Choice: A", or a bare A/B)."""
    if not text or not text.strip():
        raise UnparseableReply("empty reply")
    value = None
    try:
        obj = {str(k).lower(): v for k, v in parse_json_object(text).items()}
        value = obj.get("choice") or obj.get("winner") or obj.get("better")
    except UnparseableReply:
        pass
    if value is None:
        match = _CHOICE.search(text)
        if match:
            value = match.group(1)
    if value is None:
        bare = text.strip().strip(".*()[] ").lower()
        if bare in {"a", "b", "tie", "1", "2", "response a", "response b"}:
            value = bare.removeprefix("response ")
    if value is None:
        raise UnparseableReply("no choice found (expected 'Choice: A', 'Choice: B' or 'Choice: tie')")
    value = str(value).strip().lower().removeprefix("response ").strip("() ")
    mapping = {"a": "a", "1": "a", "b": "b", "2": "b", "tie": "tie", "equal": "tie"}
    if value not in mapping:
        raise UnparseableReply(f"choice {value!r} is not A, B or tie")
    return mapping[value]


_LIST_PREFIX = re.compile(r"^\s*(?:(?:task|instruction)\s*\d*\s*[:.)-]|\d+\s*[.):-]|[-*•])\s*", re.IGNORECASE)


def numbered_items(text: str) -> list[str]:
    """The items of a reply that lists tasks ("1. ...", "Task 3: ...", "- ..."), or its
    non-empty lines when it is not a list."""
    items = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        item = _LIST_PREFIX.sub("", line).strip()
        if item:
            items.append(item)
    return items
