"""The split keeps every prompt and near-duplicate cluster on one side; builds reproduce."""

import hashlib
import json

import pytest

from corpus.snapshots.job import build_files, start_snapshot_build
from tests.corpus.snapshot_helpers import feedback, read_rows, record

pytestmark = pytest.mark.django_db


@pytest.fixture
def crowded(dataset, users):
    """60 prompts, many repeated (same prompt, other spacing/case) and 10 near-dup clusters."""
    for i in range(60):
        prompt = f"Question {i % 25}" if i % 3 else f"  question   {i % 25} "
        cluster = f"c{i % 10}" if i % 4 == 0 else ""
        rec, ids = record(dataset, prompt + ("" if not cluster else f" variant {i}"), f"A{i}", f"B{i}", f"C{i}",
                          dup_cluster=cluster, source=f"src{i % 2}")
        feedback(rec, "ranking", {"ranking": [[ids[0]], [ids[1]], [ids[2]]]}, users["manager"])
    return dataset


def build_once(dataset, **split):
    recipe = {"kind": "preference", "sources": ["demo"], "split": {"test_fraction": 0.3, "seed": 3, **split},
              "output": {"parquet": True}}
    snapshot = start_snapshot_build(recipe, enqueue=False)
    return snapshot, build_files(snapshot)


def lineage_groups(snapshot):
    from corpus.models import Record

    sides = {}
    for line in (snapshot.directory / "lineage.jsonl").read_text().splitlines():
        entry = json.loads(line)
        sides.setdefault(entry["record"], set()).add(entry["split"])
    records = Record.objects.in_bulk(list(sides))
    by_prompt, by_cluster = {}, {}
    for rid, split in sides.items():
        assert len(split) == 1  # one record's pairs never straddle
        rec = records[rid]
        by_prompt.setdefault(" ".join(rec.prompt.split()).lower(), set()).update(split)
        if rec.dup_cluster:
            by_cluster.setdefault(rec.dup_cluster, set()).update(split)
    return by_prompt, by_cluster


def test_no_prompt_and_no_cluster_on_both_sides(crowded):
    snapshot, built = build_once(crowded)
    assert built["counts"]["train"] > 0 and built["counts"]["test"] > 0
    by_prompt, by_cluster = lineage_groups(snapshot)
    assert all(len(sides) == 1 for sides in by_prompt.values())
    assert all(len(sides) == 1 for sides in by_cluster.values())
    assert {side for sides in by_cluster.values() for side in sides} == {"train", "test"}
    # the lineage row index points at the right output row
    train = read_rows(snapshot, "train")
    first = json.loads((snapshot.directory / "lineage.jsonl").read_text().splitlines()[0])
    from corpus.models import Response

    assert first["split"] == "train" and first["row"] == 0
    assert train[0]["chosen"][0]["content"] == Response.objects.get(pk=first["responses"][0]).text


def test_stratified_split_gives_each_source_its_share(crowded):
    snapshot, built = build_once(crowded, stratify_by_source=True)
    by_prompt, by_cluster = lineage_groups(snapshot)
    assert all(len(sides) == 1 for sides in by_cluster.values())
    assert built["counts"]["test"] > 0


def test_two_builds_are_byte_identical_and_the_seed_matters(crowded):
    first, built1 = build_once(crowded)
    second, built2 = build_once(crowded)
    assert built1["content_hash"] == built2["content_hash"]
    for name in ("train.jsonl", "test.jsonl", "manifest.json", "card.md", "lineage.jsonl", "train.parquet"):
        one = (first.directory / name).read_bytes()
        two = (second.directory / name).read_bytes()
        assert hashlib.sha256(one).hexdigest() == hashlib.sha256(two).hexdigest(), name
    manifest = json.loads((first.directory / "manifest.json").read_text())
    assert manifest["files"]["train.jsonl"]["sha256"] == hashlib.sha256(
        (first.directory / "train.jsonl").read_bytes()).hexdigest()
    assert manifest["recipe"]["kind"] == "preference" and "python" in manifest["library_versions"]
    other, built3 = build_once(crowded, seed=4)
    assert built3["content_hash"] != built1["content_hash"]
    assert sorted((other.directory / "train.jsonl").read_text().splitlines() +
                  (other.directory / "test.jsonl").read_text().splitlines()) == sorted(
        (first.directory / "train.jsonl").read_text().splitlines() +
        (first.directory / "test.jsonl").read_text().splitlines())


def test_rows_are_shuffled_not_in_record_order(crowded):
    snapshot, _ = build_once(crowded, test_fraction=0.0)
    records = [json.loads(line)["record"] for line in (snapshot.directory / "lineage.jsonl").read_text().splitlines()]
    assert records != sorted(records)


def test_parquet_matches_jsonl(crowded):
    import pyarrow.parquet as pq

    snapshot, _ = build_once(crowded)
    table = pq.read_table(snapshot.directory / "train.parquet")
    assert table.to_pylist() == read_rows(snapshot, "train")


@pytest.mark.django_db(transaction=True)  # the parts run in forked processes on their own connections
def test_a_parallel_build_writes_the_same_bytes_as_a_serial_one(settings, users, monkeypatch):
    from corpus.models import Dataset
    from corpus.snapshots import job, parallel

    runs = []
    monkeypatch.setattr(job, "build_in_parts",
                        lambda recipe, parts, **kw: runs.append(parts) or parallel.build_in_parts(recipe, parts, **kw))

    dataset = Dataset.objects.create(name="demo")
    for i in range(40):
        rec, ids = record(dataset, f"prompt {i % 30}", f"A{i}", f"B{i}", f"C{i}",
                          dup_cluster=f"c{i % 7}" if i % 5 == 0 else "")
        feedback(rec, "ranking", {"ranking": [[ids[0]], [ids[1]], [ids[2]]]}, users["manager"])
    settings.WINNOW_SNAPSHOT_WORKERS = 1
    serial, built_serial = build_once(dataset)
    settings.WINNOW_SNAPSHOT_WORKERS = 3
    settings.WINNOW_SNAPSHOT_PARALLEL_MIN_RECORDS = 10
    parallel, built_parallel = build_once(dataset)
    assert len(runs) == 1 and len(runs[0]) == 3  # three id ranges, three processes
    assert built_parallel["stats"]["records_read"] == 40
    assert built_parallel["content_hash"] == built_serial["content_hash"]
    for name in ("train.jsonl", "test.jsonl", "lineage.jsonl", "card.md", "manifest.json"):
        assert (parallel.directory / name).read_bytes() == (serial.directory / name).read_bytes(), name
    assert not list(parallel.directory.glob(".spool*"))
