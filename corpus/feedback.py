"""Validation of Feedback payloads, one schema per kind.

Payloads name responses by id. `validate_payload` checks the shape and types, checks that
every named response is one of the record's (`response_ids`), and returns the payload in
canonical form (defaults filled in, unknown keys rejected).

    rating    {"response": id, "value": 4, "scale_min": 1, "scale_max": 5,
               "aspect": "overall", "rationale": ""}
    ranking   {"ranking": [[best], [tied, tied], [worst]], "all_bad": false}
              groups are best first; a group of several is a tie; responses left out are
              unranked (partial top-k); "all_bad" may stand with an empty ranking
    pairwise  {"a": id, "b": id, "choice": "a"|"b"|"tie", "strength": null|"slight"|"clear"|"much",
               "margin": null|number}
    binary    {"response": id, "label": true|false, "reason": ""}
    edit      {"response": id, "edited": id}   the edited response is the human rewrite
"""

from __future__ import annotations

from collections.abc import Collection


class PayloadError(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


PAIRWISE_CHOICES = ("a", "b", "tie")
PAIRWISE_STRENGTHS = ("slight", "clear", "much")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _response_ref(payload: dict, key: str, response_ids: Collection[int] | None) -> int:
    if key not in payload:
        raise PayloadError(key, "required field is missing")
    value = payload[key]
    if not _is_int(value):
        raise PayloadError(key, f"must be a response id (an integer), got {value!r}")
    if response_ids is not None and value not in response_ids:
        raise PayloadError(key, f"response {value} does not belong to this record")
    return value


def _text(payload: dict, key: str, default: str = "", limit: int = 20_000) -> str:
    value = payload.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise PayloadError(key, "must be a string")
    if len(value) > limit:
        raise PayloadError(key, f"is longer than {limit} characters")
    return value


def _reject_unknown(payload: dict, allowed: set[str]) -> None:
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise PayloadError(unknown[0], f"unknown field; allowed: {', '.join(sorted(allowed))}")


def _rating(p: dict, ids) -> dict:
    _reject_unknown(p, {"response", "value", "scale_min", "scale_max", "aspect", "rationale"})
    response = _response_ref(p, "response", ids)
    lo, hi = p.get("scale_min", 1), p.get("scale_max", 5)
    for key, bound in (("scale_min", lo), ("scale_max", hi)):
        if not _is_int(bound):
            raise PayloadError(key, "must be an integer")
    if lo >= hi:
        raise PayloadError("scale_max", "must be greater than scale_min")
    if "value" not in p:
        raise PayloadError("value", "required field is missing")
    value = p["value"]
    if not _is_number(value):
        raise PayloadError("value", "must be a number")
    if not lo <= value <= hi:
        raise PayloadError("value", f"must be between {lo} and {hi}, got {value}")
    aspect = _text(p, "aspect", "overall", limit=64) or "overall"
    return {
        "response": response, "value": value, "scale_min": lo, "scale_max": hi,
        "aspect": aspect, "rationale": _text(p, "rationale"),
    }


def _ranking(p: dict, ids) -> dict:
    _reject_unknown(p, {"ranking", "all_bad"})
    all_bad = p.get("all_bad", False)
    if not isinstance(all_bad, bool):
        raise PayloadError("all_bad", "must be true or false")
    groups = p.get("ranking", [])
    if not isinstance(groups, list):
        raise PayloadError("ranking", "must be a list of groups (lists of response ids)")
    seen: set[int] = set()
    canonical = []
    for index, group in enumerate(groups):
        if _is_int(group):  # a flat list [3, 1, 2] is a ranking without ties
            group = [group]
        if not isinstance(group, list) or not group:
            raise PayloadError(f"ranking[{index}]", "must be a non-empty list of response ids")
        for member in group:
            if not _is_int(member):
                raise PayloadError(f"ranking[{index}]", f"{member!r} is not a response id")
            if ids is not None and member not in ids:
                raise PayloadError(
                    f"ranking[{index}]", f"response {member} does not belong to this record"
                )
            if member in seen:
                raise PayloadError(f"ranking[{index}]", f"response {member} is ranked twice")
            seen.add(member)
        canonical.append(list(group))
    if not all_bad and len(seen) < 2:
        raise PayloadError("ranking", "must order at least two responses (or set all_bad)")
    return {"ranking": canonical, "all_bad": all_bad}


def _pairwise(p: dict, ids) -> dict:
    _reject_unknown(p, {"a", "b", "choice", "strength", "margin"})
    a = _response_ref(p, "a", ids)
    b = _response_ref(p, "b", ids)
    if a == b:
        raise PayloadError("b", "must be a different response from a")
    choice = p.get("choice")
    if choice not in PAIRWISE_CHOICES:
        raise PayloadError("choice", f"must be one of {', '.join(PAIRWISE_CHOICES)}")
    strength = p.get("strength")
    if strength is not None and strength not in PAIRWISE_STRENGTHS:
        raise PayloadError("strength", f"must be null or one of {', '.join(PAIRWISE_STRENGTHS)}")
    if choice == "tie" and strength is not None:
        raise PayloadError("strength", "a tie has no strength")
    margin = p.get("margin")
    if margin is not None and not _is_number(margin):
        raise PayloadError("margin", "must be a number")
    return {"a": a, "b": b, "choice": choice, "strength": strength, "margin": margin}


def _binary(p: dict, ids) -> dict:
    _reject_unknown(p, {"response", "label", "reason"})
    response = _response_ref(p, "response", ids)
    label = p.get("label")
    if not isinstance(label, bool):
        raise PayloadError("label", "must be true (thumbs up) or false (thumbs down)")
    return {"response": response, "label": label, "reason": _text(p, "reason")}


def _edit(p: dict, ids) -> dict:
    _reject_unknown(p, {"response", "edited"})
    response = _response_ref(p, "response", ids)
    edited = _response_ref(p, "edited", ids)
    if edited == response:
        raise PayloadError("edited", "must be the rewrite, a different response")
    return {"response": response, "edited": edited}


VALIDATORS = {
    "rating": _rating,
    "ranking": _ranking,
    "pairwise": _pairwise,
    "binary": _binary,
    "edit": _edit,
}


def validate_payload(kind: str, payload, response_ids: Collection[int] | None = None) -> dict:
    try:
        validator = VALIDATORS[kind]
    except KeyError:
        raise PayloadError("kind", f"must be one of {', '.join(VALIDATORS)}") from None
    if not isinstance(payload, dict):
        raise PayloadError("payload", "must be a JSON object")
    return validator(payload, response_ids)


def referenced_responses(kind: str, payload: dict) -> list[int]:
    """The response ids a (validated) payload names."""
    if kind == "ranking":
        return [member for group in payload["ranking"] for member in group]
    if kind == "pairwise":
        return [payload["a"], payload["b"]]
    if kind == "edit":
        return [payload["response"], payload["edited"]]
    return [payload["response"]]
