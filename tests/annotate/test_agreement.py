"""Agreement statistics against published worked examples and hand computations."""

import pytest

from annotate import agreement as ag

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 coders x 12 units
# example with missing values: nominal alpha = 0.743, interval alpha = 0.849.
KRIPPENDORFF_2011 = [
    [1, None, 1, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
    [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [None, 5, 5, 5], [None, None, 1, 1], [None, 3, None, None],
]
# (the table is coders A,B,C,D per unit; A's units 1-9, B's 1-10 and 12, C's 2-11, D's 1-11)
KRIPPENDORFF_2011[0] = [1, 1, None, 1]


def units(table):
    return [[v for v in row if v is not None] for row in table]


def test_krippendorff_alpha_matches_the_published_example():
    assert ag.krippendorff_alpha(units(KRIPPENDORFF_2011), "nominal") == pytest.approx(0.743, abs=5e-4)
    assert ag.krippendorff_alpha(units(KRIPPENDORFF_2011), "interval") == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_alpha_edge_cases():
    assert ag.krippendorff_alpha([[1, 1], [2, 2], [3, 3]], "nominal") == pytest.approx(1.0)
    assert ag.krippendorff_alpha([[1, 1], [1, 1]]) is None  # no variation: undefined
    assert ag.krippendorff_alpha([[1], [2]]) is None  # no unit judged twice
    # two coders who always disagree on a binary label: alpha below zero
    assert ag.krippendorff_alpha([[True, False], [False, True]], "nominal") < 0


def test_cohen_kappa_wikipedia_example():
    # 50 units: both yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    first = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
    second = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert ag.cohen_kappa(first, second) == pytest.approx(0.4)
    assert ag.cohen_kappa(["a", "b"], ["a", "b"]) == pytest.approx(1.0)
    assert ag.cohen_kappa(["a", "a"], ["a", "a"]) is None
    with pytest.raises(ValueError):
        ag.cohen_kappa(["a"], ["a", "b"])


def test_fleiss_kappa_wikipedia_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories -> 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert ag.fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError):
        ag.fleiss_kappa([[1, 1], [3, 0]])


def test_fleiss_table_and_pairwise_agreement():
    assert ag.fleiss_table([["a", "b"], ["a", "a"]]) == [[1, 1], [2, 0]]
    # unit 1: 3 pairs, 1 agreeing (a,a); unit 2: 1 pair, agreeing -> 2/4
    assert ag.pairwise_agreement([["a", "a", "b"], ["c", "c"]]) == pytest.approx(0.5)
    assert ag.pairwise_agreement([["a"]]) is None


def test_kendall_tau_by_hand():
    same = {"x": 1, "y": 2, "z": 3}
    assert ag.kendall_tau(same, same) == pytest.approx(1.0)
    assert ag.kendall_tau(same, {"x": 3, "y": 2, "z": 1}) == pytest.approx(-1.0)
    # one swap of three: C=2, D=1 -> 1/3
    assert ag.kendall_tau(same, {"x": 1, "y": 3, "z": 2}) == pytest.approx(1 / 3)
    # tau-b with a tie in the second: pairs xy C, xz C, yz tie-in-second -> 2/sqrt(3*2)
    assert ag.kendall_tau(same, {"x": 1, "y": 2, "z": 2}) == pytest.approx(2 / 6 ** 0.5)
    assert ag.kendall_tau({"x": 1}, {"x": 1}) is None


def test_ranks_from_groups_puts_unranked_last_together():
    assert ag.ranks_from_groups([[7], [8, 9]], shown=[7, 8, 9, 10, 11]) == {7: 1, 8: 2, 9: 2, 10: 3, 11: 3}
