"""Snapshot build throughput and memory: Winnow's streaming build vs load-everything-first.

    python bench/snapshot_bench.py            # 1,000,000 preference pairs; baseline on 100,000
    python bench/snapshot_bench.py --quick    # 100,000 pairs; baseline on 10,000

Fills a fresh SQLite file in a temp folder (or DATABASE_URL if set: use an empty database)
with records of two responses and one pairwise judgement each, written by SQL in the database
itself. Then, each in a child process whose peak RSS is sampled over its process tree:
  - winnow: `winnow snapshot build RECIPE.yaml` (the real CLI and job), on all pairs;
  - baseline: the naive exporter on the baseline's pairs: every record with its responses and
    feedback loaded through the ORM first, rows built in memory, shuffled, split and written.
Goals (issue 6): the 1M build in <= 120 s, peak memory <= 400 MB (PSS summed over the build's
process tree: its forked parts share most pages with it; the RSS sum is printed beside it). Ends with one line of JSON.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def tree_memory(proc: psutil.Process) -> tuple[int, int]:
    """(RSS, PSS) summed over the process tree. The build forks its parts, and a forked child's
    RSS counts every page it still shares with its parent (the interpreter, Django, the
    libraries) a second time; PSS charges a shared page to each sharer in proportion, so its
    sum is the memory the tree really holds. Both are reported; the goal is read on PSS."""
    rss = pss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            rss += p.memory_info().rss
            pss += p.memory_full_info().pss
        except psutil.Error:
            pass
    return rss, pss


def run_sampled(command: list[str], env: dict) -> tuple[float, float, float, str]:
    """Wall seconds, peak RSS and peak PSS of the process tree (MB, sampled every 100 ms), stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watched = psutil.Process(proc.pid)
    peak = peak_pss = 0
    while proc.poll() is None:
        try:
            rss, pss = tree_memory(watched)
            peak, peak_pss = max(peak, rss), max(peak_pss, pss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.decode()}\n{err.decode()[-3000:]}")
    return elapsed, peak / 2**20, peak_pss / 2**20, out.decode()


def fill(dataset_name: str, n: int) -> int:
    """n records, 2 responses and 1 pairwise feedback each, generated inside the database."""
    from django.db import connection, transaction

    from corpus.models import Dataset

    dataset = Dataset.objects.create(name=dataset_name)
    pg = connection.vendor == "postgresql"
    series = "generate_series(1, %s) AS s(i)" if pg else \
        "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %s) SELECT i FROM s) AS s"
    now = "now()" if pg else "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"
    pad = "md5(i::text)" if pg else "hex(randomblob(16))"
    cat = "||"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO corpus_record (dataset_id, kind, prompt, context, history, metadata,
                   external_id, source, provenance, status, status_reason, dup_cluster, created_at)
                SELECT %s, 'instruction', 'Question ' {cat} i {cat} ': explain ' {cat} {pad} {cat} ' ' {cat} {pad},
                       '', '[]', '{{}}', NULL, 'bench', '{{}}', 'kept', '', '', {now}
                FROM {series}""", [dataset.pk, n])
        for label in ("A good, detailed answer", "A worse answer"):
            cursor.execute(
                f"""INSERT INTO corpus_response (record_id, text, author_kind, model_name,
                       generation_params, provenance, status, status_reason, created_at)
                    SELECT id, '{label} to ' {cat} id {cat} ': ' {cat} prompt {cat} ' ' {cat} prompt {cat} ' ' {cat} prompt,
                           'model', 'gen-1', '{{}}', '{{}}', 'kept', '', {now}
                    FROM corpus_record WHERE dataset_id = %s""", [dataset.pk])
        payload = ("json_build_object('a', min(p.id), 'b', max(p.id), 'choice', 'a', 'strength', NULL, "
                   "'margin', NULL)::jsonb" if pg else
                   "json_object('a', min(p.id), 'b', max(p.id), 'choice', 'a', 'strength', NULL, "
                   "'margin', NULL)")
        cursor.execute(
            f"""INSERT INTO corpus_feedback (record_id, kind, payload, author_kind, model_name,
                   provenance, created_at, updated_at)
                SELECT r.id, 'pairwise', {payload}, 'model', 'judge-1', '{{}}', {now}, {now}
                FROM corpus_record r JOIN corpus_response p ON p.record_id = r.id
                WHERE r.dataset_id = %s GROUP BY r.id""", [dataset.pk])
    if pg:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE corpus_record; ANALYZE corpus_response; ANALYZE corpus_feedback")
    return dataset.pk


def baseline_child(dataset_id: int, out_dir: str) -> None:
    """The naive exporter: everything in memory first (what Argilla-style exporters do)."""
    import django

    django.setup()
    from corpus.models import Feedback, Record, Response
    from django.db.models import Prefetch

    started = time.perf_counter()
    records = list(Record.objects.filter(dataset_id=dataset_id, status="kept").prefetch_related(
        Prefetch("responses", queryset=Response.objects.filter(status="kept")),
        Prefetch("feedback", queryset=Feedback.objects.filter(kind="pairwise")),
    ))
    rows = []
    for record in records:
        texts = {r.pk: r.text for r in record.responses.all()}
        for fb in record.feedback.all():
            p = fb.payload
            if p["choice"] == "tie" or p["a"] not in texts or p["b"] not in texts:
                continue
            chosen, rejected = (p["a"], p["b"]) if p["choice"] == "a" else (p["b"], p["a"])
            rows.append({"prompt": [{"role": "user", "content": record.prompt}],
                         "chosen": [{"role": "assistant", "content": texts[chosen]}],
                         "rejected": [{"role": "assistant", "content": texts[rejected]}],
                         "margin": 1.0, "source": f"{fb.author_kind}:pairwise"})
    random.Random(42).shuffle(rows)
    cut = int(len(rows) * 0.9)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for name, part in (("train", rows[:cut]), ("test", rows[cut:])):
        with open(Path(out_dir) / f"{name}.jsonl", "w") as handle:
            for row in part:
                handle.write(json.dumps(row) + "\n")
    print(json.dumps({"pairs": len(rows), "seconds": time.perf_counter() - started}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pairs", type=int)
    parser.add_argument("--baseline-pairs", type=int)
    parser.add_argument("--baseline-child", nargs=2, metavar=("DATASET_ID", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        baseline_child(int(args.baseline_child[0]), args.baseline_child[1])
        return
    n = args.pairs or (100_000 if args.quick else 1_000_000)
    n_base = args.baseline_pairs or max(1000, n // 10)

    work = Path(tempfile.mkdtemp(prefix="winnow-snapshot-bench-"))
    env = {**os.environ, "WINNOW_DATA_DIR": str(work), "DJANGO_SETTINGS_MODULE": "winnow.settings",
           "WINNOW_LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    import django

    django.setup()
    from django.db import connection

    started = time.perf_counter()
    main_id = fill("bench-main", n)
    base_id = fill("bench-baseline", n_base)
    print(f"filled {n:,} + {n_base:,} records (2 responses, 1 pairwise judgement each) in "
          f"{time.perf_counter() - started:.0f} s on {connection.vendor}; work dir {work}", flush=True)
    connection.close()

    base_s, base_rss, _, out = run_sampled(
        [sys.executable, str(Path(__file__).resolve()), "--baseline-child", str(base_id), str(work / "baseline")], env)
    base_pairs = json.loads(out.strip().splitlines()[-1])["pairs"]
    base_rate = base_pairs / base_s
    print(f"baseline (all rows in memory first, {base_pairs:,} pairs): {base_rate:,.0f} pairs/s, "
          f"peak RSS {base_rss:.0f} MB", flush=True)

    recipe = work / "recipe.yaml"
    recipe.write_text("name: bench\nkind: preference\nsources: {datasets: [bench-main]}\n"
                      "split: {test_fraction: 0.1, seed: 42}\n")
    seconds, rss, pss, out = run_sampled([sys.executable, "-m", "winnow.cli", "snapshot", "build", str(recipe)], env)
    from corpus.models import Snapshot

    snapshot = Snapshot.objects.get(name="bench")
    pairs = snapshot.counts["train"] + snapshot.counts["test"]
    rate = pairs / seconds
    print(f"winnow snapshot build ({pairs:,} pairs): {seconds:.1f} s, {rate:,.0f} pairs/s, "
          f"peak RSS {rss:.0f} MB summed over its processes, peak PSS {pss:.0f} MB", flush=True)
    ratio = rate / base_rate
    print(f"ratio: {ratio:.2f}x the baseline's pairs/s; baseline RSS per 1k pairs "
          f"{base_rss / base_pairs * 1000:.1f} MB vs winnow {rss / pairs * 1000:.2f} MB")
    projected_baseline_rss = base_rss / base_pairs * pairs
    figures = {
        "pairs": pairs, "seconds": round(seconds, 1), "pairs_per_s": round(rate), "peak_rss_mb": round(rss),
        "peak_pss_mb": round(pss),
        "baseline_pairs": base_pairs, "baseline_pairs_per_s": round(base_rate),
        "baseline_peak_rss_mb": round(base_rss), "ratio": round(ratio, 2),
        "baseline_rss_projected_to_full_size_mb": round(projected_baseline_rss),
        "database": connection.vendor,
        # below 1M pairs (--quick) the time goal is judged on the rate projected to 1M
        "projected_to_1m": pairs < 1_000_000,
        "goals": {"build_1m_pairs_within_120s": seconds * max(1.0, 1_000_000 / pairs) <= 120,
                  "peak_memory_within_400mb": pss <= 400},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
