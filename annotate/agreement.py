"""Inter-annotator agreement: pure functions over plain values.

Units are lists of the values the annotators gave one thing (one item, or one response on
one aspect); missing values are simply absent. Each function returns None where the
statistic is undefined (too little data, or no variation to disagree about).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from itertools import combinations


def _nominal(a, b) -> float:
    return 0.0 if a == b else 1.0


def _interval(a, b) -> float:
    return float(a - b) ** 2


def krippendorff_alpha(units: Sequence[Sequence[Hashable]], level: str = "nominal") -> float | None:
    """Krippendorff's alpha from the coincidence matrix (Krippendorff 2011, "Computing
    Krippendorff's Alpha-Reliability"). level: "nominal" or "interval"."""
    delta = {"nominal": _nominal, "interval": _interval}[level]
    coincidences: dict[tuple, float] = defaultdict(float)
    for values in units:
        m = len(values)
        if m < 2:
            continue  # a unit judged once cannot disagree with anything
        for i, j in ((i, j) for i in range(m) for j in range(m) if i != j):
            coincidences[(values[i], values[j])] += 1.0 / (m - 1)
    if not coincidences:
        return None
    totals: dict = defaultdict(float)
    for (c, _), weight in coincidences.items():
        totals[c] += weight
    n = sum(totals.values())
    observed = sum(w * delta(c, k) for (c, k), w in coincidences.items())
    expected = sum(totals[c] * totals[k] * delta(c, k) for c in totals for k in totals)
    if expected == 0:
        return None  # everyone used one value: agreement is undefined, not perfect
    return 1.0 - (n - 1) * observed / expected


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    """Cohen's kappa for two annotators' labels on the same units (in the same order)."""
    if len(first) != len(second):
        raise ValueError("both annotators must label the same units")
    n = len(first)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(first, second)) / n
    count_a, count_b = Counter(first), Counter(second)
    expected = sum(count_a[c] * count_b[c] for c in count_a) / (n * n)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa. `table[i][j]` = how many annotators put unit i in category j; every
    unit must have the same number of annotators (at least two)."""
    rows = [list(row) for row in table if sum(row) > 0]
    if not rows:
        return None
    raters = sum(rows[0])
    if raters < 2 or any(sum(row) != raters for row in rows):
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of annotators per unit")
    units = len(rows)
    p_j = [sum(row[j] for row in rows) / (units * raters) for j in range(len(rows[0]))]
    p_i = [(sum(c * c for c in row) - raters) / (raters * (raters - 1)) for row in rows]
    p_bar = sum(p_i) / units
    p_e = sum(p * p for p in p_j)
    if p_e == 1:
        return None
    return (p_bar - p_e) / (1 - p_e)


def fleiss_table(units: Sequence[Sequence[Hashable]]) -> list[list[int]]:
    """Units of equal size -> the category-count table fleiss_kappa reads."""
    categories = sorted({v for values in units for v in values}, key=repr)
    return [[Counter(values)[c] for c in categories] for values in units]


def pairwise_agreement(units: Sequence[Sequence[Hashable]]) -> float | None:
    """The share of annotator pairs, over all units, that gave the same value."""
    agree = total = 0
    for values in units:
        for a, b in combinations(values, 2):
            agree += a == b
            total += 1
    return agree / total if total else None


def kendall_tau(first: dict[Hashable, float], second: dict[Hashable, float]) -> float | None:
    """Kendall's tau-b between two rankings given as {thing: rank} (1 = best; tied things
    share a rank). Only things both rankings place are compared."""
    common = sorted(set(first) & set(second), key=repr)
    concordant = discordant = ties_first = ties_second = 0
    for a, b in combinations(common, 2):
        d1 = first[a] - first[b]
        d2 = second[a] - second[b]
        if d1 == 0 and d2 == 0:
            continue
        if d1 == 0:
            ties_first += 1
        elif d2 == 0:
            ties_second += 1
        elif (d1 > 0) == (d2 > 0):
            concordant += 1
        else:
            discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_first) * (concordant + discordant + ties_second))
    if denominator == 0:
        return None
    return (concordant - discordant) / denominator


def ranks_from_groups(groups: Sequence[Sequence[Hashable]], shown: Sequence[Hashable] = ()) -> dict:
    """[[best], [tied, tied], ...] -> {thing: rank}; things shown but left unranked (partial
    top-k) share the rank after the last group."""
    ranks, position = {}, 1
    for group in groups:
        for thing in group:
            ranks[thing] = position
        position += 1
    for thing in shown:
        ranks.setdefault(thing, position)
    return ranks
