"""The snapshot recipe: what to build, from what, how. Parsed from YAML or JSON, validated
strictly (unknown keys are errors: a typo must not silently change a training set), and
stored in canonical form (every default filled in) in the Snapshot row and the manifest.

    name: helpful-dpo
    kind: preference                  # sft | preference | binary | text
    sources: {datasets: [demo]}       # names or ids
    filters:  {status: kept, min_agreement: 0.6, include_gold: false,
               exclude_annotators: [bob], feedback_source: both,
               created_after: 2026-01-01, created_before: null,
               metadata: {category: open_qa}, min_annotators: 1}
    policies: {...}                   # per kind, see POLICY_DEFAULTS
    split:    {test_fraction: 0.1, seed: 42, stratify_by_source: false}
    output:   {format: chat, system_prompt: null, parquet: false,
               pack_to_tokens: null, tokenizer: null}
    card:     {license: "", pii_policy: "", description: ""}

A RecipeError names the field and says what to change; the API turns it into a 400.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass

import yaml

KINDS = ("sft", "preference", "binary", "text")
STATUSES = ("kept", "dropped", "any")
FEEDBACK_SOURCES = ("human", "model", "both")
AGGREGATIONS = ("auto", "majority", "mean_rating", "bradley_terry")
RANKING_PAIRS = ("all_pairs", "best_vs_rest", "adjacent", "best_vs_worst")
TIE_POLICIES = ("drop", "keep")
PREFERENCE_SIGNALS = ("pairwise", "ranking", "rating")
BINARY_SIGNALS = ("thumbs", "rating", "preference")
SFT_SIGNALS = ("edit", "rating", "thumbs", "single")
FORMATS = {
    "sft": ("chat", "prompt_completion", "instruction", "plain"),
    "preference": ("chat", "instruction", "plain"),
    "binary": ("chat", "instruction", "plain"),
    "text": ("plain",),
}

FILTER_DEFAULTS = {
    "status": "kept",
    "min_agreement": None,
    "min_annotators": None,
    "include_gold": False,
    "exclude_annotators": [],
    "feedback_source": "both",
    "created_after": None,
    "created_before": None,
    "metadata": {},
}

POLICY_DEFAULTS = {
    "sft": {
        # best response, in this order of preference: a human edit, the top-rated response at
        # or above min_rating, a thumbs-up, and (if allowed) a record's only response
        "signals": list(SFT_SIGNALS),
        "min_rating": 4,
        "rating_aspect": None,
        "allow_single_response": True,
    },
    "preference": {
        "signals": list(PREFERENCE_SIGNALS),
        "aggregation": "auto",
        "ranking_pairs": "all_pairs",
        "rating_margin": 1.0,
        "rating_aspect": None,
        "ties": "drop",
    },
    "binary": {
        "signals": list(BINARY_SIGNALS),
        "desirable_min_rating": 4,
        "undesirable_max_rating": 2,
        "rating_aspect": None,
        "aggregation": "auto",
        "ranking_pairs": "all_pairs",
        "rating_margin": 1.0,
    },
    "text": {
        "include_context": True,
        "include_responses": False,
    },
}

SPLIT_DEFAULTS = {"test_fraction": 0.1, "seed": 42, "stratify_by_source": False}
OUTPUT_DEFAULTS = {
    "format": "chat",
    "system_prompt": None,
    "parquet": False,
    "pack_to_tokens": None,
    "tokenizer": None,
}
CARD_DEFAULTS = {"license": "", "pii_policy": "", "description": ""}
TOP_LEVEL = ("name", "kind", "sources", "filters", "policies", "split", "output", "card")


class RecipeError(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. `data` is the canonical dict (defaults filled in)."""

    data: dict

    @property
    def kind(self) -> str:
        return self.data["kind"]

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def filters(self) -> dict:
        return self.data["filters"]

    @property
    def policies(self) -> dict:
        return self.data["policies"]

    @property
    def split(self) -> dict:
        return self.data["split"]

    @property
    def output(self) -> dict:
        return self.data["output"]

    @property
    def card(self) -> dict:
        return self.data["card"]

    @property
    def dataset_ids(self) -> list[int]:
        return [source["id"] for source in self.data["sources"]["datasets"]]


def load_recipe_text(text: str) -> dict:
    """YAML (a superset of JSON) text -> a dict."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError("recipe", f"is not valid YAML or JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RecipeError("recipe", "must be a mapping with at least kind and sources")
    return data


def _section(raw: dict, key: str, defaults: dict) -> dict:
    value = raw.get(key)
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise RecipeError(key, "must be a mapping")
    unknown = sorted(set(value) - set(defaults))
    if unknown:
        raise RecipeError(f"{key}.{unknown[0]}", f"unknown setting; allowed: {', '.join(defaults)}")
    merged = copy.deepcopy(defaults)
    merged.update(value)
    return merged


def _choice(section: dict, prefix: str, key: str, choices) -> None:
    if section[key] not in choices:
        raise RecipeError(f"{prefix}.{key}", f"must be one of {', '.join(choices)}, got {section[key]!r}")


def _number(section: dict, prefix: str, key: str, lo=None, hi=None, *, integer=False,
            optional=False):
    value = section[key]
    if value is None and optional:
        return
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if not ok:
        raise RecipeError(f"{prefix}.{key}", "must be an integer" if integer else "must be a number")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise RecipeError(f"{prefix}.{key}", f"must be between {lo} and {hi}, got {value}")


def _date(section: dict, key: str) -> None:
    value = section[key]
    if value is None:
        return
    if isinstance(value, dt.datetime):
        section[key] = value.date().isoformat() if value.time() == dt.time() else value.isoformat()
        return
    if isinstance(value, dt.date):
        section[key] = value.isoformat()
        return
    try:
        dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise RecipeError(f"filters.{key}", f"must be a date like 2026-01-31, got {value!r}") from None
    section[key] = str(value)


def _signals(section: dict, prefix: str, allowed) -> None:
    signals = section["signals"]
    if isinstance(signals, str):
        signals = [signals]
    if not isinstance(signals, list) or not signals:
        raise RecipeError(f"{prefix}.signals", f"must list at least one of {', '.join(allowed)}")
    for signal in signals:
        if signal not in allowed:
            raise RecipeError(f"{prefix}.signals", f"{signal!r} is not one of {', '.join(allowed)}")
    # canonical order, so two spellings of one recipe build the same files
    section["signals"] = [s for s in allowed if s in signals]


def parse_recipe(raw, resolve_datasets=None) -> Recipe:
    """Validate a recipe (a dict, or YAML/JSON text). `resolve_datasets(list)` maps names or
    ids to [{"id", "name"}] and raises RecipeError for unknown ones; the job model layer
    passes one that looks them up (tests of pure validation may omit it)."""
    if isinstance(raw, (str, bytes)):
        raw = load_recipe_text(raw.decode() if isinstance(raw, bytes) else raw)
    if not isinstance(raw, dict):
        raise RecipeError("recipe", "must be a mapping")
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise RecipeError(unknown[0], f"unknown section; allowed: {', '.join(TOP_LEVEL)}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise RecipeError("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    name = raw.get("name") or f"{kind}-snapshot"
    if not isinstance(name, str) or len(name) > 200:
        raise RecipeError("name", "must be a string of at most 200 characters")

    sources = raw.get("sources")
    if isinstance(sources, list):  # shorthand: sources: [demo, other]
        sources = {"datasets": sources}
    if not isinstance(sources, dict) or set(sources) - {"datasets"}:
        raise RecipeError("sources", "must be {datasets: [name or id, ...]}")
    datasets = sources.get("datasets")
    if isinstance(datasets, (str, int)):
        datasets = [datasets]
    if not isinstance(datasets, list) or not datasets:
        raise RecipeError("sources.datasets", "name at least one dataset (by name or id)")
    # a canonical recipe (as stored) names them {"id", "name"}: the id is what counts
    datasets = [d["id"] if isinstance(d, dict) and isinstance(d.get("id"), int) else d
                for d in datasets]
    for entry in datasets:
        if isinstance(entry, bool) or not isinstance(entry, (str, int)):
            raise RecipeError("sources.datasets", f"{entry!r} is not a dataset name or id")
    resolved = resolve_datasets(datasets) if resolve_datasets else [
        {"id": d, "name": str(d)} if isinstance(d, int) else {"id": None, "name": d} for d in datasets
    ]
    resolved = sorted({r["id"] if r["id"] is not None else r["name"]: r for r in resolved}.values(),
                      key=lambda r: (r["id"] is None, r["id"] or 0, r["name"]))

    filters = _section(raw, "filters", FILTER_DEFAULTS)
    _choice(filters, "filters", "status", STATUSES)
    _choice(filters, "filters", "feedback_source", FEEDBACK_SOURCES)
    _number(filters, "filters", "min_agreement", 0, 1, optional=True)
    _number(filters, "filters", "min_annotators", 1, 1000, integer=True, optional=True)
    if not isinstance(filters["include_gold"], bool):
        raise RecipeError("filters.include_gold", "must be true or false")
    excluded = filters["exclude_annotators"]
    if not isinstance(excluded, list) or not all(isinstance(u, str) for u in excluded):
        raise RecipeError("filters.exclude_annotators", "must be a list of usernames")
    filters["exclude_annotators"] = sorted(set(excluded))
    _date(filters, "created_after")
    _date(filters, "created_before")
    if filters["created_after"] and filters["created_before"] and (
        filters["created_after"] >= filters["created_before"]
    ):
        raise RecipeError("filters.created_before",
                          "the date range is empty: created_before must be later than created_after")
    metadata = filters["metadata"]
    if not isinstance(metadata, dict) or not all(
        isinstance(v, (str, int, float, bool)) for v in metadata.values()
    ):
        raise RecipeError("filters.metadata", "must map metadata keys to plain values")
    filters["metadata"] = {str(k): metadata[k] for k in sorted(metadata)}

    policies = _section(raw, "policies", POLICY_DEFAULTS[kind])
    _check_policies(kind, policies, filters)

    split = _section(raw, "split", SPLIT_DEFAULTS)
    _number(split, "split", "test_fraction", 0, 0.9)
    _number(split, "split", "seed", 0, 2**63, integer=True)
    if not isinstance(split["stratify_by_source"], bool):
        raise RecipeError("split.stratify_by_source", "must be true or false")

    output = _section(raw, "output", OUTPUT_DEFAULTS)
    if kind == "text" and output["format"] == "chat":
        output["format"] = "plain"  # the default means nothing for plain documents
    _choice(output, "output", "format", FORMATS[kind])
    if output["system_prompt"] is not None:
        if not isinstance(output["system_prompt"], str):
            raise RecipeError("output.system_prompt", "must be a string")
        if output["format"] not in ("chat", "prompt_completion"):
            raise RecipeError("output.system_prompt",
                              "only chat-formatted rows carry a system prompt; use format: chat")
    if not isinstance(output["parquet"], bool):
        raise RecipeError("output.parquet", "must be true or false")
    _number(output, "output", "pack_to_tokens", 16, 1_000_000, integer=True, optional=True)
    if output["pack_to_tokens"] is not None:
        if kind != "text":
            raise RecipeError("output.pack_to_tokens", "packing applies to text snapshots only")
        if not output["tokenizer"] or not isinstance(output["tokenizer"], str):
            raise RecipeError("output.tokenizer",
                              "packing needs a local tokenizer folder (e.g. the bundled model's)")
    elif output["tokenizer"] is not None:
        raise RecipeError("output.tokenizer", "is used only with pack_to_tokens")

    card = _section(raw, "card", CARD_DEFAULTS)
    for key, value in card.items():
        if not isinstance(value, str):
            raise RecipeError(f"card.{key}", "must be a string")

    return Recipe({
        "name": name, "kind": kind, "sources": {"datasets": resolved}, "filters": filters,
        "policies": policies, "split": split, "output": output, "card": card,
    })


def _check_policies(kind: str, p: dict, filters: dict) -> None:
    prefix = "policies"
    if kind == "sft":
        _signals(p, prefix, SFT_SIGNALS)
        _number(p, prefix, "min_rating", -1e9, 1e9)
        if not isinstance(p["allow_single_response"], bool):
            raise RecipeError("policies.allow_single_response", "must be true or false")
        if not p["allow_single_response"] and "single" in p["signals"]:
            p["signals"].remove("single")
            if not p["signals"]:
                raise RecipeError("policies.signals", "no signal left to pick a best response")
    if kind in ("preference", "binary"):
        _choice(p, prefix, "aggregation", AGGREGATIONS)
        _choice(p, prefix, "ranking_pairs", RANKING_PAIRS)
        _number(p, prefix, "rating_margin", 0, 1e9)
    if kind == "preference":
        _signals(p, prefix, PREFERENCE_SIGNALS)
        _choice(p, prefix, "ties", TIE_POLICIES)
        if p["aggregation"] == "mean_rating" and "rating" not in p["signals"]:
            raise RecipeError("policies.aggregation",
                              "mean_rating aggregates ratings, but signals leave out rating; "
                              "add rating to signals or use majority / bradley_terry")
        if p["ties"] == "keep" and filters["min_agreement"] is not None:
            pass  # a tie's agreement is the share of tie votes; both apply
    if kind == "binary":
        _signals(p, prefix, BINARY_SIGNALS)
        _number(p, prefix, "desirable_min_rating", -1e9, 1e9)
        _number(p, prefix, "undesirable_max_rating", -1e9, 1e9)
        if p["undesirable_max_rating"] >= p["desirable_min_rating"]:
            raise RecipeError("policies.undesirable_max_rating",
                              "must be below desirable_min_rating, or a rating is both good and bad")
    if kind == "text":
        for key in ("include_context", "include_responses"):
            if not isinstance(p[key], bool):
                raise RecipeError(f"policies.{key}", "must be true or false")
    if "rating_aspect" in p and p["rating_aspect"] is not None and not isinstance(p["rating_aspect"], str):
        raise RecipeError("policies.rating_aspect", "must be an aspect name or null (all aspects)")


def canonical_json(data) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
