"""Several judgements on one item -> one answer.

Comparisons (pairwise answers, and the pairs a ranking implies under the recipe's pair
policy) become votes on unordered response pairs. `majority_pairs` takes each pair's most
voted outcome (a, b or tie; a draw between outcomes is a tie); `bradley_terry_pairs` fits one
strength per response on all of the item's votes and orients every compared pair by it.
Ratings are averaged per response (`mean_ratings`, `rating_pairs`).

Every function is deterministic: same votes in, same pairs out, in the same order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from .stream import FeedbackItem, RecordItem

STRENGTHS = {None: 1.0, "slight": 1.0, "clear": 2.0, "much": 3.0}


@dataclass(slots=True)
class Vote:
    low: int             # the pair, as (lower id, higher id)
    high: int
    winner: int | None   # a response id, or None for a tie
    strength: float
    voter: str
    feedback_id: int


@dataclass(slots=True)
class Pair:
    chosen: int
    rejected: int
    margin: float
    agreement: float
    voters: list[str]
    feedback_ids: list[int]
    signal: str
    tie: bool = False


def _vote(a: int, b: int, winner, strength: float, fb: FeedbackItem) -> Vote:
    low, high = (a, b) if a < b else (b, a)
    return Vote(low, high, winner, strength, fb.voter, fb.id)


def pairwise_votes(record: RecordItem, feedback: list[FeedbackItem]) -> list[Vote]:
    votes = []
    for fb in feedback:
        if fb.kind != "pairwise":
            continue
        p = fb.payload
        a, b = p["a"], p["b"]
        if a not in record.responses or b not in record.responses:
            continue  # a response curation dropped
        if p["choice"] == "tie":
            votes.append(_vote(a, b, None, 0.0, fb))
            continue
        strength = p.get("margin")
        if strength is None:
            strength = STRENGTHS.get(p.get("strength"), 1.0)
        votes.append(_vote(a, b, a if p["choice"] == "a" else b, float(abs(strength)), fb))
    return votes


def ranking_groups(record: RecordItem, fb: FeedbackItem) -> list[list[int]]:
    """The ranking's groups (best first) without responses that are gone."""
    if fb.payload.get("all_bad"):
        return []
    groups = [[m for m in g if m in record.responses] for g in fb.payload["ranking"]]
    return [g for g in groups if g]


def pairs_from_groups(groups: list[list[int]], policy: str):
    """(better, worse, group distance) for a best-first list of tie groups; and the tied
    pairs inside groups (all_pairs only) as (x, y, 0)."""
    out = []
    last = len(groups) - 1
    for i, upper in enumerate(groups):
        if policy == "all_pairs":
            lowers = [(j, groups[j]) for j in range(i + 1, len(groups))]
        elif policy == "best_vs_rest":
            lowers = [(j, groups[j]) for j in range(1, len(groups))] if i == 0 else []
        elif policy == "adjacent":
            lowers = [(i + 1, groups[i + 1])] if i < last else []
        else:  # best_vs_worst
            lowers = [(last, groups[last])] if i == 0 and last > 0 else []
        for j, lower in lowers:
            for x in upper:
                for y in lower:
                    out.append((x, y, float(j - i)))
        if policy == "all_pairs":
            for a_index, x in enumerate(upper):
                for y in upper[a_index + 1:]:
                    out.append((x, y, 0.0))
    return out


def ranking_votes(record: RecordItem, feedback: list[FeedbackItem], policy: str) -> list[Vote]:
    votes = []
    for fb in feedback:
        if fb.kind != "ranking":
            continue
        for better, worse, distance in pairs_from_groups(ranking_groups(record, fb), policy):
            votes.append(_vote(better, worse, better if distance else None, distance, fb))
    return votes


def rating_values(record: RecordItem, feedback: list[FeedbackItem], aspect: str | None):
    """{response: {voter: mean of that voter's values}} for the responses still present."""
    per_voter: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    ids: dict[int, list[int]] = defaultdict(list)
    for fb in feedback:
        if fb.kind != "rating":
            continue
        p = fb.payload
        if p["response"] not in record.responses:
            continue
        if aspect is not None and p.get("aspect", "overall") != aspect:
            continue
        per_voter[p["response"]][fb.voter].append(float(p["value"]))
        ids[p["response"]].append(fb.id)
    values = {
        rid: {voter: sum(v) / len(v) for voter, v in voters.items()}
        for rid, voters in per_voter.items()
    }
    return values, ids


def mean_ratings(values: dict[int, dict[str, float]]) -> dict[int, float]:
    return {rid: sum(v.values()) / len(v) for rid, v in values.items() if v}


def _by_pair(votes: list[Vote]) -> dict[tuple[int, int], list[Vote]]:
    pairs: dict[tuple[int, int], list[Vote]] = {}
    for vote in votes:
        pairs.setdefault((vote.low, vote.high), []).append(vote)
    return pairs


def majority_pairs(votes: list[Vote], signal: str) -> list[Pair]:
    if len(votes) == 1:  # the common case (one judge, one pair): nothing to count
        vote = votes[0]
        if vote.winner is None:
            return [Pair(vote.low, vote.high, 0.0, 1.0, [vote.voter], [vote.feedback_id], signal, tie=True)]
        loser = vote.high if vote.winner == vote.low else vote.low
        return [Pair(vote.winner, loser, round(vote.strength, 6), 1.0, [vote.voter],
                     [vote.feedback_id], signal)]
    out = []
    for (low, high), pair_votes in sorted(_by_pair(votes).items()):
        counts = {low: 0, high: 0, None: 0}
        strength = {low: 0.0, high: 0.0}
        for vote in pair_votes:
            counts[vote.winner] += 1
            if vote.winner is not None:
                strength[vote.winner] += vote.strength
        top = max(counts.values())
        leaders = [k for k, n in counts.items() if n == top]
        n = len(pair_votes)
        agreement = round(top / n, 6)
        voters = sorted({v.voter for v in pair_votes})
        fids = sorted(v.feedback_id for v in pair_votes)
        if len(leaders) > 1 or leaders[0] is None:
            out.append(Pair(low, high, 0.0, agreement, voters, fids, signal, tie=True))
            continue
        winner = leaders[0]
        loser = high if winner == low else low
        margin = round((strength[winner] - strength[loser]) / n, 6)
        out.append(Pair(winner, loser, margin, agreement, voters, fids, signal))
    return out


def bradley_terry_strengths(votes: list[Vote], iterations: int = 200) -> dict[int, float]:
    """Log-strengths by Hunter's MM algorithm. A tie counts half a win each way; one virtual
    win and loss against an average opponent keeps an unbeaten response finite."""
    players = sorted({v.low for v in votes} | {v.high for v in votes})
    wins = {p: 1.0 for p in players}  # the virtual win
    games: dict[tuple[int, int], float] = defaultdict(float)
    for vote in votes:
        games[(vote.low, vote.high)] += 1.0
        if vote.winner is None:
            wins[vote.low] += 0.5
            wins[vote.high] += 0.5
        else:
            wins[vote.winner] += 1.0
    strength = {p: 1.0 for p in players}
    for _ in range(iterations):
        denominators = {p: 2.0 / (strength[p] + 1.0) for p in players}  # the virtual games
        for (a, b), n in games.items():
            denominators[a] += n / (strength[a] + strength[b])
            denominators[b] += n / (strength[a] + strength[b])
        updated = {p: wins[p] / denominators[p] for p in players}
        scale = math.exp(sum(math.log(s) for s in updated.values()) / len(players))
        updated = {p: s / scale for p, s in updated.items()}
        converged = max(abs(updated[p] - strength[p]) for p in players) < 1e-10
        strength = updated
        if converged:
            break
    return {p: math.log(s) for p, s in strength.items()}


def bradley_terry_pairs(votes: list[Vote], signal: str) -> list[Pair]:
    log_strength = bradley_terry_strengths(votes)
    out = []
    for (low, high), pair_votes in sorted(_by_pair(votes).items()):
        gap = log_strength[low] - log_strength[high]
        voters = sorted({v.voter for v in pair_votes})
        fids = sorted(v.feedback_id for v in pair_votes)
        if abs(gap) < 1e-9:
            ties = sum(1 for v in pair_votes if v.winner is None)
            out.append(Pair(low, high, 0.0, round(ties / len(pair_votes), 6), voters, fids,
                            signal, tie=True))
            continue
        winner, loser = (low, high) if gap > 0 else (high, low)
        agreeing = sum(1 for v in pair_votes if v.winner == winner)
        out.append(Pair(winner, loser, round(abs(gap), 6), round(agreeing / len(pair_votes), 6),
                        voters, fids, signal))
    return out


def rating_pairs(values: dict[int, dict[str, float]], feedback_ids: dict[int, list[int]],
                 policy: str, min_margin: float) -> list[Pair]:
    """Pairs whose mean ratings differ by at least `min_margin`, chosen by the pair policy
    over responses sorted by mean (equal means form one group; their pairs are ties)."""
    means = mean_ratings(values)
    ordered = sorted(means, key=lambda rid: (-means[rid], rid))
    groups: list[list[int]] = []
    for rid in ordered:
        if groups and means[groups[-1][0]] == means[rid]:
            groups[-1].append(rid)
        else:
            groups.append([rid])
    out = []
    for better, worse, distance in pairs_from_groups(groups, policy):
        gap = round(means[better] - means[worse], 6)
        shared = sorted(set(values[better]) & set(values[worse]))
        voters = sorted(set(values[better]) | set(values[worse]))
        fids = sorted(feedback_ids[better] + feedback_ids[worse])
        if distance == 0:
            agree = sum(1 for v in shared if values[better][v] == values[worse][v])
            agreement = round(agree / len(shared), 6) if shared else 1.0
            low, high = sorted((better, worse))
            out.append(Pair(low, high, 0.0, agreement, voters, fids, "rating", tie=True))
            continue
        if gap < min_margin:
            continue
        agree = sum(1 for v in shared if values[better][v] > values[worse][v])
        agreement = round(agree / len(shared), 6) if shared else 1.0
        out.append(Pair(better, worse, gap, agreement, voters, fids, "rating"))
    return out


def preference_pairs(record: RecordItem, feedback: list[FeedbackItem], policies: dict) -> list[Pair]:
    """The item's preference pairs (ties included, flagged) per the recipe's policies."""
    signals = policies["signals"]
    aggregation = policies["aggregation"]
    votes: list[Vote] = []
    used_signals = []
    if "pairwise" in signals:
        pv = pairwise_votes(record, feedback)
        votes += pv
        if pv:
            used_signals.append("pairwise")
    if "ranking" in signals:
        rv = ranking_votes(record, feedback, policies["ranking_pairs"])
        votes += rv
        if rv:
            used_signals.append("ranking")
    use_ratings = "rating" in signals and (aggregation == "mean_rating" or not votes)
    if use_ratings:
        values, ids = rating_values(record, feedback, policies.get("rating_aspect"))
        if len(values) >= 2:
            return rating_pairs(values, ids, policies["ranking_pairs"], policies["rating_margin"])
        return []
    if not votes:
        return []
    signal = "+".join(used_signals)
    if aggregation == "bradley_terry":
        return bradley_terry_pairs(votes, signal)
    return majority_pairs(votes, signal)
