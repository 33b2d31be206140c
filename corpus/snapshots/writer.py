"""Writing a snapshot: seeded grouped split, seeded external shuffle, files, manifest, card.

Rows stream in from a builder and go straight to disk: each row gets a 64-bit shuffle key
(keyed BLAKE2b of its identity and the seed) and is appended to one of a few bucket files by
the key's top bits. Afterwards each bucket is sorted in memory and appended to the output, so
the output is the rows in key order: a seeded shuffle that never holds more than one bucket
in memory, and the same for the same recipe on the same data whatever the bucket count.

The split side of a row is a keyed hash of its group (near-duplicate cluster or normalised
prompt), so every row of a group lands on one side with no table of groups in memory.

Nothing written depends on the clock, the snapshot id or the machine: two builds of one
recipe on the same data give byte-identical files (and the same content hash).
"""

from __future__ import annotations

import hashlib
import io
import platform
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import orjson

from .builders import BuiltRow, SnapshotBuilder
from .recipe import Recipe

SPLITS = ("train", "test")
ROWS_PER_BUCKET = 8192
MAX_BUCKETS = 256
PARQUET_BATCH = 10_000
FORMAT_VERSION = 1


class EmptySnapshot(Exception):
    """No row passed the recipe: the message says why and what to change."""


def _seed_key(seed: int, purpose: bytes) -> bytes:
    return hashlib.blake2b(f"{seed}".encode() + b"/" + purpose, digest_size=32).digest()


class GroupedSplitter:
    """Train or test for a row, by its group: a seeded hash compared with the test fraction.

    With `stratify_by_source`, groups are dealt per source so that each source gets its
    fraction of test groups (error diffusion from a seeded offset); that needs the side of
    every group seen, so it keeps a table (about 100 bytes a group).
    """

    def __init__(self, split: dict):
        self.fraction = float(split["test_fraction"])
        self.key = _seed_key(split["seed"], b"split")
        self.stratify = split["stratify_by_source"]
        self.sides: dict[bytes, str] = {}
        self.dealt: Counter = Counter()
        self.offsets: dict[str, float] = {}

    def _unit(self, text: str) -> float:
        digest = hashlib.blake2b(text.encode(), key=self.key, digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def side(self, row: BuiltRow) -> str:
        if self.fraction <= 0:
            return "train"
        if not self.stratify:
            return "test" if self._unit(row.group) < self.fraction else "train"
        group = hashlib.blake2b(row.group.encode(), digest_size=16).digest()
        known = self.sides.get(group)
        if known:
            return known
        source = row.source
        if source not in self.offsets:
            self.offsets[source] = self._unit("source:" + source)
        n = self.dealt[source]
        u = self.offsets[source]
        side = "test" if int((n + 1) * self.fraction + u) > int(n * self.fraction + u) else "train"
        self.dealt[source] += 1
        self.sides[group] = side
        return side


@dataclass
class FileDigest:
    name: str
    sha256: str
    bytes: int
    rows: int


@dataclass
class WriteResult:
    counts: dict
    files: list[FileDigest]
    stats: dict = field(default_factory=dict)


class HashingWriter:
    """A binary file that hashes what goes through it."""

    def __init__(self, path: Path):
        self.path = path
        self.handle = open(path, "wb", buffering=1 << 20)
        self.digest = hashlib.sha256()
        self.size = 0
        self.rows = 0

    def write_line(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)
        self.rows += 1

    def close(self) -> FileDigest:
        self.handle.close()
        return FileDigest(self.path.name, self.digest.hexdigest(), self.size, self.rows)


def digest_file(path: Path, rows: int = 0) -> FileDigest:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return FileDigest(path.name, digest.hexdigest(), path.stat().st_size, rows)


class TokenPacker:
    """Concatenates documents (each followed by EOS) and cuts the token stream into chunks
    of exactly `length` tokens (the last one may be shorter), decoded back to text."""

    def __init__(self, tokenizer_path: str, length: int):
        from transformers import AutoTokenizer

        folder = Path(tokenizer_path)
        if not folder.is_dir():
            raise EmptySnapshot(f"output.tokenizer: {tokenizer_path} is not a local folder")
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.length = length
        self.eos = self.tokenizer.eos_token_id
        self.buffer: list[int] = []
        self.records: list[int] = []

    def add(self, text: str, record: int):
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self.eos is not None:
            ids.append(self.eos)
        self.buffer.extend(ids)
        self.records.append(record)
        while len(self.buffer) >= self.length:
            yield self._emit(self.length)

    def flush(self):
        if self.buffer:
            yield self._emit(len(self.buffer))

    def _emit(self, n: int):
        chunk, self.buffer = self.buffer[:n], self.buffer[n:]
        records = sorted(set(self.records))
        # the document still in the buffer carries on into the next chunk
        self.records = self.records[-1:] if self.buffer else []
        return self.tokenizer.decode(chunk), records


def _bucket_count(expected_rows: int) -> int:
    buckets = 1
    while buckets * ROWS_PER_BUCKET < expected_rows and buckets < MAX_BUCKETS:
        buckets *= 2
    return buckets


class SnapshotWriter:
    def __init__(self, recipe: Recipe, staging: Path, *, expected_rows: int, progress=None,
                 part: int = 0):
        self.recipe = recipe
        self.staging = staging
        self.progress = progress or (lambda done, total, stage: None)
        self.splitter = GroupedSplitter(recipe.split)
        self.shuffle_key = _seed_key(recipe.split["seed"], b"shuffle")
        self.buckets = _bucket_count(expected_rows)
        self.shift = 64 - (self.buckets.bit_length() - 1)
        # A parallel build gives each part a spool of its own; finish() reads them all.
        self.spool = staging / f".spool-{part}"
        self.spool.mkdir(parents=True, exist_ok=True)
        self.spools = [self.spool]
        self.handles: dict[tuple[str, int], io.BufferedWriter] = {}
        self.spooled = Counter()

    # -- pass 1: route rows to spool buckets ----------------------------------------------------

    def add(self, built: BuiltRow) -> None:
        side = self.splitter.side(built)
        key = int.from_bytes(
            hashlib.blake2b(built.identity.encode(), key=self.shuffle_key, digest_size=8).digest(),
            "big",
        )
        bucket = key >> self.shift if self.buckets > 1 else 0
        handle = self.handles.get((side, bucket))
        if handle is None:
            handle = open(self.spool / f"{side}-{bucket:03d}", "ab", buffering=1 << 16)
            self.handles[(side, bucket)] = handle
        # orjson escapes tabs and newlines inside strings, so they are safe separators
        handle.write(b"%016x\t%s\t%s\n" % (key, orjson.dumps(built.row), orjson.dumps(built.lineage)))
        self.spooled[side] += 1

    # -- pass 2: sort each bucket, write the files ------------------------------------------

    def close_spool(self) -> None:
        for handle in self.handles.values():
            handle.close()
        self.handles.clear()

    def adopt(self, spool: Path, spooled: dict) -> None:
        """Take in the spool another process wrote (a part of a parallel build)."""
        self.spools.append(spool)
        self.spooled.update(spooled)

    def finish(self, builder: SnapshotBuilder) -> WriteResult:
        self.close_spool()
        swapped = False
        if self.spooled["train"] == 0 and self.spooled["test"] > 0:
            # Too few groups for the fraction: a snapshot without training rows is useless,
            # so everything goes to train (deterministically) and the card says so.
            for spool in self.spools:
                for path in sorted(spool.glob("test-*")):
                    path.rename(spool / path.name.replace("test-", "train-"))
            self.spooled = Counter({"train": self.spooled["test"]})
            swapped = True
        total = self.spooled["train"] + self.spooled["test"]
        if total == 0:
            raise EmptySnapshot("no rows")
        kind = self.recipe.kind
        packer_args = (self.recipe.output["tokenizer"], self.recipe.output["pack_to_tokens"])
        lineage = HashingWriter(self.staging / "lineage.jsonl")
        files: list[FileDigest] = []
        counts: dict = {}
        labels: Counter = Counter()
        sources: Counter = Counter()
        written = 0
        for side in SPLITS:
            out = HashingWriter(self.staging / f"{side}.jsonl")
            parquet = _ParquetSink(self.staging / f"{side}.parquet", kind, self.recipe.output) \
                if self.recipe.output["parquet"] else None
            packer = TokenPacker(*packer_args) if packer_args[1] else None
            for bucket in range(self.buckets):
                paths = [spool / f"{side}-{bucket:03d}" for spool in self.spools]
                paths = [path for path in paths if path.exists()]
                if not paths:
                    continue
                lines = [line for path in paths for line in path.read_bytes().splitlines()]
                lines.sort()  # key order: the same whichever part wrote a line
                for line in lines:
                    _, row_json, lineage_json = line.split(b"\t", 2)
                    if packer is not None:
                        text = orjson.loads(row_json)["text"]
                        record = orjson.loads(lineage_json)["record"]
                        for chunk, records in packer.add(text, record):
                            self._emit_text_chunk(out, lineage, parquet, side, chunk, records)
                    else:
                        index = out.rows
                        out.write_line(row_json + b"\n")
                        lineage.write_line(b'{"split":"%s","row":%d,%s\n'
                                           % (side.encode(), index, lineage_json[1:]))
                        if parquet is not None:
                            parquet.add(orjson.loads(row_json))
                        if kind == "binary":
                            labels[b'"label":true' in row_json[-14:]] += 1
                        if kind == "preference":
                            sources[_source_of(row_json)] += 1
                    written += 1
                    if written % 20_000 == 0:
                        self.progress(written, total, "writing")
                for path in paths:
                    path.unlink()
            if packer is not None:
                for chunk, records in packer.flush():
                    self._emit_text_chunk(out, lineage, parquet, side, chunk, records)
            files.append(out.close())
            counts[side] = out.rows
            if parquet is not None:
                files.append(parquet.close())
        files.append(lineage.close())
        for spool in self.spools:
            shutil.rmtree(spool, ignore_errors=True)
        if kind == "binary":
            counts["desirable"] = labels[True]
            counts["undesirable"] = labels[False]
        if kind == "preference":
            counts["by_source"] = dict(sorted(sources.items()))
        stats = {"all_rows_in_train_because_test_took_every_group": swapped} if swapped else {}
        return WriteResult(counts, files, stats)

    def _emit_text_chunk(self, out, lineage, parquet, side, chunk, records):
        index = out.rows
        out.write_line(orjson.dumps({"text": chunk}) + b"\n")
        lineage.write_line(orjson.dumps({"split": side, "row": index, "records": records}) + b"\n")
        if parquet is not None:
            parquet.add({"text": chunk})

    def abort(self) -> None:
        for handle in self.handles.values():
            handle.close()
        self.handles.clear()


def _source_of(row_json: bytes) -> str:
    start = row_json.rfind(b'"source":"')
    if start < 0:
        return ""
    start += len(b'"source":"')
    return row_json[start:row_json.index(b'"', start)].decode()


class _ParquetSink:
    """Rows -> Parquet in batches, with an explicit schema so that every batch agrees."""

    def __init__(self, path: Path, kind: str, output: dict):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
        chat = output["format"] in ("chat", "prompt_completion")
        text = message if chat else pa.string()
        schemas = {
            "sft": pa.schema([("messages", message)]) if output["format"] == "chat"
            else pa.schema([("prompt", text), ("completion", text)]),
            "preference": pa.schema([("prompt", text), ("chosen", text), ("rejected", text),
                                     ("margin", pa.float64()), ("source", pa.string())]),
            "binary": pa.schema([("prompt", text), ("completion", text), ("label", pa.bool_())]),
            "text": pa.schema([("text", pa.string())]),
        }
        self.schema = schemas[kind]
        self.path = path
        # no created_by string with a version in it: the file must not change between builds
        self.writer = pq.ParquetWriter(str(path), self.schema, compression="zstd",
                                       write_statistics=False)
        self.batch: list[dict] = []
        self.rows = 0

    def add(self, row: dict) -> None:
        self.batch.append(row)
        if len(self.batch) >= PARQUET_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.batch:
            self.writer.write_table(self.pa.Table.from_pylist(self.batch, schema=self.schema))
            self.rows += len(self.batch)
            self.batch = []

    def close(self) -> FileDigest:
        self._flush()
        self.writer.close()
        return digest_file(self.path, self.rows)


def library_versions(recipe: Recipe) -> dict:
    names = ["django", "orjson"]
    if recipe.output["parquet"]:
        names.append("pyarrow")
    if recipe.output["pack_to_tokens"]:
        names += ["transformers", "tokenizers"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        versions["winnow"] = metadata.version("winnow")
    except metadata.PackageNotFoundError:
        versions["winnow"] = None
    return versions


def manifest_bytes(recipe: Recipe, result: WriteResult, builder_summary: dict, stream_stats: dict) -> bytes:
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": recipe.kind,
        "recipe": recipe.data,
        "counts": result.counts,
        "files": {f.name: {"sha256": f.sha256, "bytes": f.bytes, "rows": f.rows} for f in result.files},
        "library_versions": library_versions(recipe),
        "build": {**builder_summary, **stream_stats, **result.stats},
        "load_with": 'datasets.load_dataset("json", data_files={"train": "train.jsonl", '
                     '"test": "test.jsonl"})',
    }
    return orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


COLUMNS = {
    ("sft", "chat"): "`messages`: the conversation, ending with the chosen assistant turn",
    ("sft", "prompt_completion"): "`prompt` (chat messages), `completion` (the assistant turn)",
    ("sft", "instruction"): "`prompt` (### Instruction / ### Context / ### Response template), "
                            "`completion`",
    ("sft", "plain"): "`prompt`, `completion` (plain strings)",
    "preference": "`prompt`, `chosen`, `rejected`, `margin` (how strongly chosen won), `source` "
                  "(who judged : which signal)",
    "binary": "`prompt`, `completion`, `label` (true: desirable)",
    "text": "`text`",
}


def card_text(recipe: Recipe, result: WriteResult, summary: dict, datasets: list[dict]) -> str:
    data = recipe.data
    fmt = recipe.output["format"]
    filters = recipe.filters
    p = recipe.policies
    lines = [f"# {data['name']}", ""]
    if recipe.card["description"]:
        lines += [recipe.card["description"], ""]
    counts = result.counts
    lines += [
        f"- **Kind:** {recipe.kind} (format: {fmt})",
        f"- **Rows:** train {counts['train']:,}, test {counts['test']:,}",
    ]
    if recipe.kind == "binary":
        lines.append(f"- **Labels:** {counts['desirable']:,} desirable, "
                     f"{counts['undesirable']:,} undesirable (KTO weights them by these counts)")
    if recipe.kind == "preference" and counts.get("by_source"):
        lines.append("- **Pairs by source:** " + ", ".join(
            f"{k} {v:,}" for k, v in counts["by_source"].items()))
    lines += [
        "- **Sources:** " + ", ".join(f"dataset {d['name']} (#{d['id']})" for d in datasets),
        "- **Generator models:** " + (", ".join(summary["generator_models"]) or "none recorded"),
        f"- **Annotators:** {summary['annotators']} ({summary['human_annotators']} people"
        + (f"; judge models: {', '.join(summary['judge_models'])}" if summary["judge_models"] else "")
        + ")",
        "- **Agreement:** " + (
            f"mean {summary['mean_agreement']:.3f} over {summary['items_with_several_annotators']:,} "
            "rows judged by several annotators" if summary["mean_agreement"] is not None
            else "no row was judged by several annotators"),
        "- **Filters:** " + "; ".join(_describe_filters(filters)),
        "- **Policies:** " + "; ".join(f"{k}: {v}" for k, v in p.items()),
        f"- **Split:** test fraction {recipe.split['test_fraction']}, seed {recipe.split['seed']}, "
        "grouped by near-duplicate cluster and prompt (no group on both sides)"
        + (", stratified by source" if recipe.split["stratify_by_source"] else "")
        + "; rows shuffled with the same seed",
        "- **PII policy:** " + (recipe.card["pii_policy"] or
                                "not stated; records curation dropped are "
                                + ("excluded" if filters["status"] == "kept" else "included")),
        "- **Licence:** " + (recipe.card["license"] or "not stated"),
        "",
        "## Columns",
        "",
        COLUMNS.get((recipe.kind, fmt)) or COLUMNS.get(recipe.kind, ""),
        "",
    ]
    if summary["skipped"]:
        lines += ["## Skipped", ""]
        lines += [f"- {reason}: {n:,}" for reason, n in summary["skipped"].items()]
        lines.append("")
    lines += [
        "## Files",
        "",
        "| file | rows | sha256 |",
        "| --- | ---: | --- |",
        *[f"| {f.name} | {f.rows:,} | `{f.sha256}` |" for f in result.files],
        "",
        "`lineage.jsonl` traces every row (split, row index) to its record, responses, feedback "
        "and annotators. `manifest.json` holds the full recipe.",
        "",
        "## Load it",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("json", data_files={"train": "train.jsonl", "test": "test.jsonl"})',
        "```",
        "",
    ]
    return "\n".join(lines)


def _describe_filters(filters: dict) -> list[str]:
    out = [f"curation status {filters['status']}" if filters["status"] != "any" else "any curation status"]
    out.append("gold items included" if filters["include_gold"] else "gold items excluded")
    out.append("excluded annotator work removed; reviewer final answers used")
    if filters["feedback_source"] != "both":
        out.append(f"{filters['feedback_source']} feedback only")
    if filters["exclude_annotators"]:
        out.append("without annotators " + ", ".join(filters["exclude_annotators"]))
    if filters["min_agreement"] is not None:
        out.append(f"agreement ≥ {filters['min_agreement']}")
    if filters["min_annotators"] is not None:
        out.append(f"≥ {filters['min_annotators']} annotators")
    if filters["created_after"]:
        out.append(f"records created from {filters['created_after']}")
    if filters["created_before"]:
        out.append(f"records created before {filters['created_before']}")
    for key, value in filters["metadata"].items():
        out.append(f"metadata {key} = {value}")
    return out


def describe_empty(recipe: Recipe, records_read: int, summary: dict, stream_skips: dict) -> str:
    """The reason an empty build gives: what was read, what skipped it, what to change."""
    if records_read == 0:
        return ("no records match the recipe's sources and filters (status, dates, metadata); "
                "widen filters (e.g. filters.status: any) or check sources.datasets")
    reasons = Counter(summary["skipped"])
    reasons.update(stream_skips)
    detail = ", ".join(f"{reason}: {n}" for reason, n in reasons.most_common(6)) or "none"
    hints = {
        "sft": "allow the only response (policies.allow_single_response), lower "
               "policies.min_rating, or add ratings, thumbs or edits",
        "preference": "keep ties (policies.ties: keep), lower policies.rating_margin or "
                      "filters.min_agreement, or collect pairwise/ranking/rating judgements",
        "binary": "move policies.desirable_min_rating / undesirable_max_rating, or collect thumbs",
        "text": "check that the records have text",
    }
    return (f"the recipe produced no rows from {records_read} records (skipped: {detail}); "
            f"to change: {hints[recipe.kind]}")


def merge_skips(*sources: dict) -> dict:
    merged: defaultdict = defaultdict(int)
    for source in sources:
        for key, value in source.items():
            merged[key] += value
    return dict(sorted(merged.items()))
