import pytest

from corpus.feedback import PayloadError, referenced_responses, validate_payload

IDS = {1, 2, 3, 4}


@pytest.mark.parametrize("kind,payload,expected", [
    ("rating", {"response": 1, "value": 4},
     {"response": 1, "value": 4, "scale_min": 1, "scale_max": 5, "aspect": "overall", "rationale": ""}),
    ("rating", {"response": 2, "value": 7, "scale_min": 1, "scale_max": 7, "aspect": "honesty", "rationale": "ok"},
     {"response": 2, "value": 7, "scale_min": 1, "scale_max": 7, "aspect": "honesty", "rationale": "ok"}),
    ("ranking", {"ranking": [[1], [2, 3]]}, {"ranking": [[1], [2, 3]], "all_bad": False}),
    ("ranking", {"ranking": [3, 1]}, {"ranking": [[3], [1]], "all_bad": False}),
    ("ranking", {"ranking": [], "all_bad": True}, {"ranking": [], "all_bad": True}),
    ("pairwise", {"a": 1, "b": 2, "choice": "b", "strength": "much"},
     {"a": 1, "b": 2, "choice": "b", "strength": "much", "margin": None}),
    ("pairwise", {"a": 1, "b": 2, "choice": "tie"},
     {"a": 1, "b": 2, "choice": "tie", "strength": None, "margin": None}),
    ("binary", {"response": 3, "label": False, "reason": "rude"}, {"response": 3, "label": False, "reason": "rude"}),
    ("edit", {"response": 1, "edited": 4}, {"response": 1, "edited": 4}),
])
def test_valid_payloads_come_back_canonical(kind, payload, expected):
    assert validate_payload(kind, payload, IDS) == expected


@pytest.mark.parametrize("kind,payload,field", [
    ("rating", {"value": 3}, "response"),
    ("rating", {"response": 9, "value": 3}, "response"),
    ("rating", {"response": True, "value": 3}, "response"),
    ("rating", {"response": 1}, "value"),
    ("rating", {"response": 1, "value": 6}, "value"),
    ("rating", {"response": 1, "value": "4"}, "value"),
    ("rating", {"response": 1, "value": 3, "scale_min": 5, "scale_max": 5}, "scale_max"),
    ("rating", {"response": 1, "value": 3, "stars": 5}, "stars"),
    ("ranking", {"ranking": [[1]]}, "ranking"),
    ("ranking", {"ranking": [[1], [1]]}, "ranking[1]"),
    ("ranking", {"ranking": [[1], []]}, "ranking[1]"),
    ("ranking", {"ranking": [[1], [99]]}, "ranking[1]"),
    ("ranking", {"ranking": "1,2"}, "ranking"),
    ("ranking", {"ranking": [[1], [2]], "all_bad": "no"}, "all_bad"),
    ("pairwise", {"a": 1, "b": 1, "choice": "a"}, "b"),
    ("pairwise", {"a": 1, "b": 2, "choice": "c"}, "choice"),
    ("pairwise", {"a": 1, "b": 2, "choice": "tie", "strength": "much"}, "strength"),
    ("pairwise", {"a": 1, "b": 2, "choice": "a", "strength": "huge"}, "strength"),
    ("pairwise", {"a": 1, "b": 2, "choice": "a", "margin": "x"}, "margin"),
    ("binary", {"response": 1, "label": "yes"}, "label"),
    ("binary", {"response": 1, "label": True, "reason": 5}, "reason"),
    ("edit", {"response": 1, "edited": 1}, "edited"),
    ("edit", {"response": 1}, "edited"),
    ("vote", {}, "kind"),
    ("rating", [1, 2], "payload"),
])
def test_invalid_payloads_name_the_field(kind, payload, field):
    with pytest.raises(PayloadError) as err:
        validate_payload(kind, payload, IDS)
    assert err.value.field == field and err.value.reason


def test_referenced_responses():
    assert referenced_responses("ranking", {"ranking": [[1], [2, 3]]}) == [1, 2, 3]
    assert referenced_responses("pairwise", {"a": 1, "b": 2}) == [1, 2]
    assert referenced_responses("binary", {"response": 4}) == [4]
