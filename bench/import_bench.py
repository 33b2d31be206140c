"""Import throughput and memory: Winnow's streaming, batched import vs one ORM save() per row.

    python bench/import_bench.py            # 200,000 records; baseline on a 20,000 sample
    python bench/import_bench.py --quick    # 20,000 records; baseline on 2,000

Runs on a fresh SQLite file in a temp folder (or on DATABASE_URL if set: use an empty
database). The import runs as `winnow import` in a child process; its peak RSS is sampled over its
whole process tree (it parses big files in a child of its own). The ratio compares like with
like: the baseline's loop without Django's set-up, the import job from its start to its finish
(its rate over the whole command, process start included, is printed too).
Goals (issue 2): >= 20x the baseline's records/s, and peak RSS under 500 MB.
Ends with one line of JSON.
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
WORDS = ("data model train label prompt answer quality human judge token corpus dedup "
         "response preference reward policy gradient batch sample filter review").split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def generate(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for i in range(n):
            row = {
                "id": f"r{i}",
                "instruction": sentence(rng, rng.randint(8, 30)),
                "context": sentence(rng, rng.randint(0, 40)) if i % 3 == 0 else "",
                "response": " ".join(sentence(rng, rng.randint(6, 20)) for _ in range(rng.randint(1, 5))),
                "category": rng.choice(("open_qa", "closed_qa", "brainstorming", "summarization")),
            }
            handle.write(json.dumps(row) + "\n")


def baseline(path: Path, limit: int) -> float:
    """One ORM save() per record and per response, the naive way: records per second."""
    import django

    django.setup()
    from corpus.models import Dataset, Record, Response

    dataset = Dataset.objects.create(name="baseline")
    started = time.perf_counter()
    with open(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if line_no > limit:
                break
            row = json.loads(line)
            record = Record(dataset=dataset, prompt=row["instruction"], context=row["context"],
                            external_id=row["id"], metadata={"category": row["category"]},
                            source="baseline")
            record.save()
            Response(record=record, text=row["response"], author_kind="human").save()
    return limit / (time.perf_counter() - started)


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def winnow_import(path: Path, env: dict) -> tuple[float, float, float, dict]:
    """records/s of the import job (its own start to finish, as the baseline's loop is timed
    without the set-up before it), records/s of the whole `winnow import` command (process
    start and Django set-up included), peak RSS in MB (the import process and its parsing
    child together, sampled every 250 ms), the job's result."""
    command = [sys.executable, "-m", "winnow.cli", "import", str(path), "--dataset", "bench"]
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, tree_rss(watched))
        except psutil.Error:
            pass
        time.sleep(0.25)
    elapsed = time.perf_counter() - started
    output = proc.stdout.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"winnow import failed:\n{output}")
    import django

    django.setup()
    from jobs.models import Job

    job = Job.objects.filter(kind="corpus.import").order_by("-id").first()
    job_seconds = (job.finished_at - job.started_at).total_seconds()
    return job.result["records"] / job_seconds, job.result["records"] / elapsed, peak / 2**20, job.result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--records", type=int)
    parser.add_argument("--baseline-records", type=int)
    args = parser.parse_args()
    n = args.records or (20_000 if args.quick else 200_000)
    n_base = args.baseline_records or max(1000, n // 10)

    work = Path(tempfile.mkdtemp(prefix="winnow-bench-"))
    env = {**os.environ, "WINNOW_DATA_DIR": str(work), "DJANGO_SETTINGS_MODULE": "winnow.settings",
           "WINNOW_LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)

    data = work / "bench.jsonl"
    generate(data, n)
    size_mb = data.stat().st_size / 1e6
    print(f"generated {n:,} records ({size_mb:.0f} MB) in {work}")

    base_rate = baseline(data, n_base)
    print(f"baseline (one ORM save() per row, {n_base:,} records): {base_rate:,.0f} records/s")

    rate, command_rate, peak_mb, result = winnow_import(data, env)
    print(f"winnow import ({result['records']:,} records, {result['responses']:,} responses): "
          f"{rate:,.0f} records/s over the job, {command_rate:,.0f} records/s over the whole "
          f"command (process start included), peak RSS {peak_mb:.0f} MB")
    ratio = rate / base_rate
    print(f"ratio: {ratio:.1f}x the baseline")

    figures = {
        "records": result["records"], "records_per_s": round(rate), "baseline_records_per_s": round(base_rate),
        "ratio": round(ratio, 1), "command_records_per_s": round(command_rate),
        "command_ratio": round(command_rate / base_rate, 1), "peak_rss_mb": round(peak_mb), "file_mb": round(size_mb),
        "database": "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite",
        "goals": {"records_per_s_20x_baseline": ratio >= 20, "peak_rss_under_500mb": peak_mb < 500},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
