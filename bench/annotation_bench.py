"""Annotation queue under load: 50 simulated annotators against gunicorn on PostgreSQL.

    python bench/annotation_bench.py                 # 60 s of next+submit cycles
    python bench/annotation_bench.py --quick         # 15 s
    python bench/annotation_bench.py --think-ms 0    # a closed loop: the server's capacity

Each annotator is an asyncio task with its own token, looping POST next -> POST submit (with a
client key) over real HTTP. Afterwards the database is checked: lost annotations (a submit
answered 201 with no Feedback row behind it), over-collected items (more submissions than the
overlap) and duplicates (one annotator twice on an item).

Each annotator pauses before each cycle (exponential, 250 ms mean by default: far quicker than
a person reads), so 50 annotators offer up to 50 / 0.25 s = 200 cycles/s, above the goal's
150, and the latency measured is the server's own at that rate. With `--think-ms 0` the loop
is closed: 50 annotators always waiting, so by Little's law the mean latency is
50 / (requests/s) whatever the server does (a p99 of 100 ms would need 500+ requests/s);
that run measures capacity, the cycles/s the server sustains flat out.

Needs PostgreSQL: DATABASE_URL, or postgres://postgres@127.0.0.1:5432/winnow_annotate_bench by
default (dropped and recreated). Goals (issue 5, 2 cores): >= 150 cycles/s, p99 <= 100 ms,
0 errors, 0 lost, 0 over-collected. Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/winnow_annotate_bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recreate_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def prepare(annotators: int, items: int, overlap: int) -> tuple[int, list[str]]:
    """Migrate, then a dataset of `items` records with two responses each, a pairwise project
    and annotator accounts with tokens. Returns (project id, tokens)."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    call_command("migrate", verbosity=0)
    from annotate.models import AnnotationProject, ProjectMember
    from annotate.questions import normalise_questions
    from annotate.setup import build_items, normalise_filter
    from corpus.models import Dataset, Record, Response
    from winnow.roles import grant_role

    User = get_user_model()
    boss = User.objects.create_user(username="boss", password="x" * 20)
    grant_role(boss, "manager")
    dataset = Dataset.objects.create(name="bench")
    records = Record.objects.bulk_create(
        Record(dataset=dataset, prompt=f"Prompt {n}: explain item {n} briefly.") for n in range(items))
    Response.objects.bulk_create(
        Response(record=r, text=f"Answer {side} for {r.pk}: " + "words " * 40, author_kind="model",
                 model_name=f"m{side}") for r in records for side in (0, 1))
    project = AnnotationProject.objects.create(
        name="bench", dataset=dataset, questions=normalise_questions([{"name": "better", "kind": "pairwise"}]),
        record_filter=normalise_filter({}), overlap=overlap, created_by=boss)
    build_items(project)
    tokens = []
    for n in range(annotators):
        user = User.objects.create_user(username=f"annotator{n}", password="x" * 20)
        grant_role(user, "annotator")
        ProjectMember.objects.create(project=project, user=user, role="annotator")
        tokens.append(Token.objects.create(user=user).key)
    return project.pk, tokens


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def database_cpu_seconds() -> float:
    """CPU of every PostgreSQL process on this machine (backends included), when the server is
    local and its processes readable; else 0."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if (proc.info["name"] or "").startswith("postgres"):
            try:
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
            except psutil.Error:
                pass
    return total


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def annotator(client, base: str, project: int, token: str, deadline: float, stats: dict,
                    think: float = 0.0, rng=None) -> None:
    headers = {"Authorization": f"Token {token}"}
    while time.perf_counter() < deadline:
        if think:
            # A person reads before answering: exponential pauses with this mean, so the
            # server sees an arrival rate rather than a closed loop of waiting clients.
            await asyncio.sleep(rng.expovariate(1 / think))
        started = time.perf_counter()
        try:
            response = await client.post(f"{base}/api/v1/annotation-projects/{project}/next", json={},
                                         headers=headers)
        except Exception as exc:  # noqa: BLE001 - counted as an error
            stats["errors"].append(f"next: {exc!r}")
            continue
        stats["next"].append(time.perf_counter() - started)
        if response.status_code == 204:
            stats["exhausted"] += 1
            return
        if response.status_code != 200:
            stats["errors"].append(f"next {response.status_code}: {response.text[:200]}")
            continue
        item = response.json()
        key = uuid.uuid4().hex
        body = {"item": item["item"], "answers": {"better": {"choice": "a", "strength": "clear"}},
                "client_key": key}
        started = time.perf_counter()
        try:
            response = await client.post(f"{base}/api/v1/annotation-projects/{project}/submit", json=body,
                                         headers=headers)
        except Exception as exc:  # noqa: BLE001
            stats["errors"].append(f"submit: {exc!r}")
            continue
        stats["submit"].append(time.perf_counter() - started)
        if response.status_code != 201:
            stats["errors"].append(f"submit {response.status_code}: {response.text[:200]}")
            continue
        stats["acknowledged"].add((item["item"], token))
        stats["cycles"] += 1


async def drive(base: str, project: int, tokens: list[str], seconds: float, think: float = 0.0) -> dict:
    import random

    import httpx

    stats = {"next": [], "submit": [], "errors": [], "cycles": 0, "exhausted": 0, "acknowledged": set()}
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(annotator(client, base, project, t, deadline, stats, think, random.Random(n))
                               for n, t in enumerate(tokens)))
        stats["elapsed"] = time.perf_counter() - started
    return stats


def check_database(project: int, overlap: int, acknowledged: set, tokens: list[str]) -> dict:
    from collections import Counter

    from rest_framework.authtoken.models import Token

    from annotate.models import Assignment, Item
    from corpus.models import Feedback

    user_of = dict(Token.objects.filter(key__in=tokens).values_list("key", "user_id"))
    stored = set(
        (f.provenance["item"], f.author_id) for f in Feedback.objects.filter(provenance__annotation_project=project))
    lost = sum(1 for item, token in acknowledged if (item, user_of[token]) not in stored)
    counts = Counter(Assignment.objects.filter(project=project, status="submitted").values_list("item_id", flat=True))
    over = sum(1 for n in counts.values() if n > overlap)
    over_items = Item.objects.filter(project=project, submitted__gt=overlap).count()
    duplicates = sum(1 for n in Counter(
        Assignment.objects.filter(project=project).values_list("item_id", "annotator_id")).values() if n > 1)
    feedback_per_pair = Counter((f.provenance["item"], f.author_id)
                                for f in Feedback.objects.filter(provenance__annotation_project=project))
    return {"lost": lost, "over_collected": max(over, over_items), "duplicates": duplicates,
            "doubled_feedback": sum(1 for n in feedback_per_pair.values() if n > 1),
            "feedback_rows": len(stored)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="15 s instead of 60 s")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_WORKERS", "4")))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("WEB_THREADS", "1")))
    parser.add_argument("--think-ms", type=float, default=250.0,
                        help="mean pause before each cycle (0: a closed loop, every annotator "
                             "asks again the moment it is answered)")
    args = parser.parse_args()
    seconds = args.seconds or (15 if args.quick else 60)
    url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    if not url.startswith("postgres"):
        print("annotation_bench needs PostgreSQL (DATABASE_URL=postgres://...)", file=sys.stderr)
        return 2
    recreate_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "winnow.settings")
    os.environ.setdefault("WINNOW_LOG_LEVEL", "WARNING")
    items = int(seconds * 400 / args.overlap) + 500  # more work than the goal rate can finish
    project, tokens = prepare(args.annotators, items, args.overlap)

    port = free_port()
    env = {**os.environ, "WINNOW_LOG_LEVEL": "WARNING", "WINNOW_DB_CONN_MAX_AGE": "60"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "winnow.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(args.web_workers), "--threads", str(args.threads), "--log-level", "warning"],
        cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(f"{base}/login/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        import psutil

        workers = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]

        def cpu_seconds() -> float:
            total = 0.0
            for proc in workers:
                try:
                    times = proc.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    pass
            return total

        cpu_before, db_before, me_before = cpu_seconds(), database_cpu_seconds(), own_cpu_seconds()
        stats = asyncio.run(drive(base, project, tokens, seconds, args.think_ms / 1000))
        server_cpu = cpu_seconds() - cpu_before
        db_cpu = database_cpu_seconds() - db_before
        client_cpu = own_cpu_seconds() - me_before
    finally:
        server.terminate()
        server.wait(timeout=30)
    checked = check_database(project, args.overlap, stats["acknowledged"], tokens)
    all_requests = stats["next"] + stats["submit"]
    result = {
        "annotators": args.annotators, "think_ms": args.think_ms,
        "seconds": round(stats["elapsed"], 1), "overlap": args.overlap,
        "web_workers": args.web_workers, "threads": args.threads, "cpus": os.cpu_count(),
        "cycles": stats["cycles"], "cycles_per_s": round(stats["cycles"] / stats["elapsed"], 1),
        "next_p50_ms": round(1000 * percentile(stats["next"], .5), 1),
        "next_p99_ms": round(1000 * percentile(stats["next"], .99), 1),
        "submit_p50_ms": round(1000 * percentile(stats["submit"], .5), 1),
        "submit_p99_ms": round(1000 * percentile(stats["submit"], .99), 1),
        "p99_ms": round(1000 * percentile(all_requests, .99), 1),
        "errors": len(stats["errors"]), **checked,
        # CPU the web server spent per cycle: a figure a busy shared machine distorts less than
        # wall-clock rates (PostgreSQL's own CPU is not included).
        "server_cpu_ms_per_cycle": round(1000 * server_cpu / stats["cycles"], 1) if stats["cycles"] else None,
        # Where the rest of the two cores went: the asyncio client (this process) and the
        # PostgreSQL server (exited backends' CPU is not counted).
        "client_cpu_ms_per_cycle": round(1000 * client_cpu / stats["cycles"], 1) if stats["cycles"] else None,
        "database_cpu_ms_per_cycle": round(1000 * db_cpu / stats["cycles"], 1) if stats["cycles"] else None,
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    if stats["errors"]:
        print("first errors:", *stats["errors"][:5], sep="\n  ", file=sys.stderr)
    result["goals"] = {
        "cycles_per_s>=150": result["cycles_per_s"] >= 150,
        "p99<=100ms": result["p99_ms"] <= 100,
        "errors==0": result["errors"] == 0,
        "lost==0": result["lost"] == 0,
        "over_collected==0": result["over_collected"] == 0 and result["duplicates"] == 0,
    }
    for key, value in result.items():
        if key != "goals":
            print(f"{key:>16}: {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
