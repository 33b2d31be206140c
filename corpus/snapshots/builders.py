"""One small builder per snapshot kind. A builder turns one RecordItem (with its cleaned
feedback) into zero or more BuiltRows: the output columns, the lineage, and the keys the
writer needs (a split group and a stable identity that seeds the shuffle). Builders count
why they skip records, so an empty result can say what to change.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .aggregation import Pair, mean_ratings, preference_pairs, rating_values
from .recipe import Recipe
from .stream import FeedbackItem, RecordItem

INSTRUCTION_TEMPLATE_HEADERS = ("### Instruction:", "### Context:", "### Response:")


@dataclass(slots=True)
class BuiltRow:
    row: dict
    identity: str      # unique within a snapshot, stable across builds: orders the shuffle
    group: str         # rows of one group land on one side of the split
    source: str        # Record.source, for stratified splits
    lineage: dict
    label: bool | None = None


def split_group(record: RecordItem) -> str:
    """Near-duplicate cluster when curation set one, else the normalised prompt side."""
    if record.dup_cluster:
        return "cluster:" + record.dup_cluster
    parts = [m["content"] for m in record.history] + [record.prompt, record.context]
    return "prompt:" + "\x00".join(" ".join(part.split()) for part in parts).lower()


def judge_kind(voters) -> str:
    if len(voters) == 1:
        return "model" if voters[0].startswith("model:") else "human"
    kinds = {"model" if v.startswith("model:") else "human" for v in voters}
    return kinds.pop() if len(kinds) == 1 else "mixed"


class PromptRenderer:
    """The prompt side and a completion in the recipe's output format."""

    def __init__(self, output: dict):
        self.format = output["format"]
        self.system_prompt = output["system_prompt"]

    def prompt(self, record: RecordItem):
        if self.format in ("chat", "prompt_completion"):
            return record.messages(self.system_prompt)
        history = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in record.history
                            if m["role"] != "system")
        if self.format == "instruction":
            # The base-model template: ### Instruction / ### Context / ### Response.
            context = "\n\n".join(part for part in (history, record.context) if part)
            text = f"{INSTRUCTION_TEMPLATE_HEADERS[0]}\n{record.prompt}\n\n"
            if context:
                text += f"{INSTRUCTION_TEMPLATE_HEADERS[1]}\n{context}\n\n"
            return text + f"{INSTRUCTION_TEMPLATE_HEADERS[2]}\n"
        body = record.prompt if not record.context else f"{record.prompt}\n\n{record.context}"
        return f"{history}\n\n{body}" if history else body

    def completion(self, text: str):
        if self.format in ("chat", "prompt_completion"):
            return [{"role": "assistant", "content": text}]
        return text


class SnapshotBuilder:
    kind = ""
    feedback_kinds: tuple[str, ...] | None = ()

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.policies = recipe.policies
        self.filters = recipe.filters
        self.render = PromptRenderer(recipe.output)
        self.skipped: Counter = Counter()
        self.annotators: set[str] = set()
        self.generator_models: set[str] = set()
        self.agreement_sum = 0.0
        self.agreement_items = 0

    def rows(self, record: RecordItem):
        raise NotImplementedError

    def passes_agreement(self, agreement: float | None, voters) -> bool:
        """The recipe's min_agreement / min_annotators filters, counted when they bite."""
        minimum = self.filters["min_annotators"]
        if minimum is not None and len(voters) < minimum:
            self.skipped[f"fewer than {minimum} annotators"] += 1
            return False
        threshold = self.filters["min_agreement"]
        if threshold is not None and agreement is not None and agreement < threshold:
            self.skipped[f"agreement below {threshold}"] += 1
            return False
        return True

    def note_use(self, record: RecordItem, response_ids, voters, agreement: float | None):
        self.annotators.update(voters)
        for rid in response_ids:
            model = record.responses[rid].model_name
            if model:
                self.generator_models.add(model)
        if agreement is not None and len(voters) > 1:
            self.agreement_sum += agreement
            self.agreement_items += 1

    def lineage(self, record: RecordItem, response_ids, feedback_ids, voters) -> dict:
        return {"record": record.id, "responses": list(response_ids),
                "feedback": sorted(feedback_ids), "annotators": sorted(voters)}

    def summary(self) -> dict:
        return {
            "annotators": len(self.annotators),
            "human_annotators": sum(1 for a in self.annotators if not a.startswith("model:")),
            "judge_models": sorted(a[6:] for a in self.annotators if a.startswith("model:")),
            "generator_models": sorted(self.generator_models),
            "mean_agreement": round(self.agreement_sum / self.agreement_items, 4)
            if self.agreement_items else None,
            "items_with_several_annotators": self.agreement_items,
            "skipped": dict(sorted(self.skipped.items())),
        }


class SFTBuilder(SnapshotBuilder):
    """Prompt + best response: a human edit, else the top-rated response at or above
    min_rating, else a thumbs-up, else (if allowed) the only response."""

    kind = "sft"
    feedback_kinds = ("edit", "rating", "binary")

    def best_response(self, record: RecordItem):
        """(response id, feedback ids, voters, agreement, how) or None."""
        signals = self.policies["signals"]
        feedback = record.feedback
        if "edit" in signals:
            edits = [(fb.payload["edited"], fb) for fb in feedback
                     if fb.kind == "edit" and fb.payload["edited"] in record.responses]
            if edits:
                rid, fb = max(edits, key=lambda e: e[1].id)
                return rid, [fb.id], [fb.voter], None, "edit"
            rewrites = [r for r in record.responses.values()
                        if r.edited_from is not None and r.author_kind == "human"]
            if rewrites:
                return max(r.id for r in rewrites), [], [], None, "edit"
        values, rating_ids = rating_values(record, feedback, self.policies["rating_aspect"])
        means = mean_ratings(values)
        if "rating" in signals and means:
            best = min(means, key=lambda rid: (-means[rid], rid))
            if means[best] >= self.policies["min_rating"]:
                voters = sorted(values[best])
                return best, rating_ids[best], voters, _rating_agreement(values[best], self.policies["min_rating"]), "rating"
        thumbs = _thumbs(record, feedback)
        if "thumbs" in signals:
            liked = [(sum(1 for v in votes.values() if v) - sum(1 for v in votes.values() if not v), rid)
                     for rid, (votes, _) in thumbs.items()
                     if sum(1 for v in votes.values() if v) > len(votes) / 2]
            if liked:
                _, rid = max(liked, key=lambda t: (t[0], -t[1]))
                votes, fids = thumbs[rid]
                agree = sum(1 for v in votes.values() if v) / len(votes)
                return rid, fids, sorted(votes), round(agree, 6), "thumbs"
        if "single" in signals and len(record.responses) == 1:
            (rid,) = record.responses
            disliked = rid in thumbs and sum(1 for v in thumbs[rid][0].values() if not v) >= len(thumbs[rid][0]) / 2
            low_rated = rid in means and means[rid] < self.policies["min_rating"]
            if disliked or low_rated:
                self.skipped["only response was judged bad"] += 1
                return None
            return rid, [], [], None, "single"
        if not record.responses:
            self.skipped["no responses"] += 1
        elif len(record.responses) > 1 and "single" in signals and not feedback:
            self.skipped["several responses and no judgement to choose one"] += 1
        else:
            self.skipped["no response good enough"] += 1
        return None

    def rows(self, record: RecordItem):
        best = self.best_response(record)
        if best is None:
            return
        rid, fids, voters, agreement, how = best
        if how != "single" and not self.passes_agreement(agreement, voters):
            return
        if how == "single" and self.filters["min_annotators"]:
            self.skipped[f"fewer than {self.filters['min_annotators']} annotators"] += 1
            return
        self.note_use(record, [rid], voters, agreement)
        text = record.responses[rid].text
        prompt = self.render.prompt(record)
        completion = self.render.completion(text)
        if self.render.format == "chat":
            row = {"messages": [*prompt, *completion]}
        else:
            row = {"prompt": prompt, "completion": completion}
        yield BuiltRow(row, f"{record.id}", split_group(record), record.source,
                       self.lineage(record, [rid], fids, voters) | {"picked_by": how})


def _rating_agreement(voter_values: dict[str, float], threshold: float) -> float:
    above = sum(1 for v in voter_values.values() if v >= threshold)
    return round(above / len(voter_values), 6)


def _thumbs(record: RecordItem, feedback: list[FeedbackItem]):
    """{response: ({voter: label}, [feedback ids])}; a voter's latest label counts."""
    out: dict[int, tuple[dict, list]] = {}
    for fb in feedback:
        if fb.kind != "binary" or fb.payload["response"] not in record.responses:
            continue
        votes, fids = out.setdefault(fb.payload["response"], ({}, []))
        votes[fb.voter] = fb.payload["label"]
        fids.append(fb.id)
    return out


class PreferencePairBuilder(SnapshotBuilder):
    """prompt/chosen/rejected (+ margin, source) from pairwise, ranking, rating judgements."""

    kind = "preference"
    feedback_kinds = ("pairwise", "ranking", "rating")

    def __init__(self, recipe: Recipe):
        super().__init__(recipe)
        self.feedback_kinds = tuple(recipe.policies["signals"])

    def rows(self, record: RecordItem):
        pairs = preference_pairs(record, record.feedback, self.policies)
        if not pairs:
            self.skipped["no usable comparison"] += 1
            return
        prompt = None
        group = split_group(record)
        for pair in pairs:
            if pair.tie and self.policies["ties"] == "drop":
                self.skipped["tie"] += 1
                continue
            if not self.passes_agreement(pair.agreement, pair.voters):
                continue
            if prompt is None:
                prompt = self.render.prompt(record)
            self.note_use(record, (pair.chosen, pair.rejected), pair.voters, pair.agreement)
            row = {
                "prompt": prompt,
                "chosen": self.render.completion(record.responses[pair.chosen].text),
                "rejected": self.render.completion(record.responses[pair.rejected].text),
                "margin": float(pair.margin),
                "source": f"{judge_kind(pair.voters)}:{pair.signal}",
            }
            yield BuiltRow(row, f"{record.id}:{pair.chosen}:{pair.rejected}", group, record.source,
                           self.lineage(record, [pair.chosen, pair.rejected], pair.feedback_ids,
                                        pair.voters) | {"agreement": pair.agreement})


class BinaryFeedbackBuilder(SnapshotBuilder):
    """prompt/completion/label per response: from thumbs (majority), else mean rating
    against the thresholds, else unpaired preferences (more wins than losses)."""

    kind = "binary"
    feedback_kinds = ("binary", "rating", "pairwise", "ranking")

    def label(self, record: RecordItem, rid: int, thumbs, values, rating_ids, pairs: list[Pair]):
        for signal in self.policies["signals"]:
            if signal == "thumbs" and rid in thumbs:
                votes, fids = thumbs[rid]
                up = sum(1 for v in votes.values() if v)
                down = len(votes) - up
                if up == down:
                    self.skipped["thumbs split evenly"] += 1
                    return None
                return up > down, fids, sorted(votes), round(max(up, down) / len(votes), 6)
            if signal == "rating" and rid in values:
                mean = sum(values[rid].values()) / len(values[rid])
                if mean >= self.policies["desirable_min_rating"]:
                    good = True
                elif mean <= self.policies["undesirable_max_rating"]:
                    good = False
                else:
                    self.skipped["rating between the thresholds"] += 1
                    return None
                agree = sum(1 for v in values[rid].values()
                            if (v >= self.policies["desirable_min_rating"]) == good)
                return good, rating_ids[rid], sorted(values[rid]), round(agree / len(values[rid]), 6)
            if signal == "preference":
                won = [p for p in pairs if p.chosen == rid]
                lost = [p for p in pairs if p.rejected == rid]
                if len(won) == len(lost):
                    continue
                used = won + lost
                voters = sorted({v for p in used for v in p.voters})
                fids = sorted({f for p in used for f in p.feedback_ids})
                return len(won) > len(lost), fids, voters, round(max(len(won), len(lost)) / len(used), 6)
        return None

    def rows(self, record: RecordItem):
        thumbs = _thumbs(record, record.feedback) if "thumbs" in self.policies["signals"] else {}
        values, rating_ids = (rating_values(record, record.feedback, self.policies["rating_aspect"])
                              if "rating" in self.policies["signals"] else ({}, {}))
        pairs = []
        if "preference" in self.policies["signals"]:
            pref_policies = {**self.policies, "signals": ["pairwise", "ranking", "rating"]}
            pairs = [p for p in preference_pairs(record, record.feedback, pref_policies) if not p.tie]
        prompt = None
        group = split_group(record)
        judged = False
        for rid in record.responses:
            found = self.label(record, rid, thumbs, values, rating_ids, pairs)
            if found is None:
                continue
            judged = True
            label, fids, voters, agreement = found
            if not self.passes_agreement(agreement, voters):
                continue
            if prompt is None:
                prompt = self.render.prompt(record)
            self.note_use(record, [rid], voters, agreement)
            row = {"prompt": prompt, "completion": self.render.completion(record.responses[rid].text),
                   "label": label}
            yield BuiltRow(row, f"{record.id}:{rid}", group, record.source,
                           self.lineage(record, [rid], fids, voters), label=label)
        if not judged:
            self.skipped["no thumbs, rating or preference on any response"] += 1


class TextDocumentBuilder(SnapshotBuilder):
    """One document per record (prompt, optionally its context and responses); the writer
    packs them into fixed token lengths when the recipe asks."""

    kind = "text"
    feedback_kinds = None

    def rows(self, record: RecordItem):
        parts = [record.prompt]
        if self.policies["include_context"] and record.context:
            parts.append(record.context)
        responses = list(record.responses) if self.policies["include_responses"] else []
        parts += [record.responses[rid].text for rid in responses]
        text = "\n\n".join(p for p in parts if p)
        if not text.strip():
            self.skipped["empty document"] += 1
            return
        self.note_use(record, responses, [], None)
        yield BuiltRow({"text": text}, f"{record.id}", split_group(record), record.source,
                       self.lineage(record, responses, [], []))


BUILDERS = {
    "sft": SFTBuilder,
    "preference": PreferencePairBuilder,
    "binary": BinaryFeedbackBuilder,
    "text": TextDocumentBuilder,
}


def builder_for(recipe: Recipe) -> SnapshotBuilder:
    return BUILDERS[recipe.kind](recipe)


# what each kind needs in the data before a build is worth starting
SIGNAL_KINDS = {
    "preference": {"pairwise": ("pairwise",), "ranking": ("ranking",), "rating": ("rating",)},
    "binary": {"thumbs": ("binary",), "rating": ("rating",), "preference": ("pairwise", "ranking", "rating")},
}


def required_feedback_kinds(recipe: Recipe) -> tuple[str, ...] | None:
    table = SIGNAL_KINDS.get(recipe.kind)
    if table is None:
        return None
    kinds: list[str] = []
    for signal in recipe.policies["signals"]:
        kinds += [k for k in table[signal] if k not in kinds]
    return tuple(kinds)

