"""The import job against a real database: writes, all-or-nothing, resume, dedup, cancel."""

import os

import pytest

from corpus.importing import KIND, ImportRequest
from corpus.models import Feedback, Record, Response
from jobs.models import Job
from jobs.registry import JobCancelled
from jobs.runner import create_job, run_job
from tests.conftest import write_jsonl

pytestmark = pytest.mark.django_db


def import_job(dataset, path, **options) -> Job:
    params = ImportRequest(dataset_id=dataset.pk, path=str(path), filename=path.name, **options)
    job = create_job(KIND, params=params.as_params(), subject=f"dataset:{dataset.pk}", enqueue=False)
    run_job(job.pk)
    job.refresh_from_db()
    return job


def test_preference_import_writes_records_responses_and_feedback(dataset, tmp_path):
    path = write_jsonl(tmp_path / "pref.jsonl", [
        {"id": f"p{i}", "prompt": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(5)
    ])
    job = import_job(dataset, path)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["records"] == 5 and job.result["responses"] == 10 and job.result["feedback"] == 5
    assert (job.progress_done, job.progress_total) == (5, 5)
    record = Record.objects.get(dataset=dataset, external_id="p3")
    chosen, rejected = record.responses.order_by("id")
    (fb,) = record.feedback.all()
    assert fb.kind == "pairwise" and fb.payload["a"] == chosen.pk and fb.payload["b"] == rejected.pk
    assert fb.payload["choice"] == "a"
    assert (chosen.text, rejected.text) == ("good 3", "bad 3")
    assert record.source == "import:pref.jsonl" and record.provenance["line"] == 4
    assert record.job_id == job.pk


def test_binary_import(dataset, tmp_path):
    path = write_jsonl(tmp_path / "kto.jsonl", [
        {"prompt": "p", "completion": "c1", "label": True}, {"prompt": "p", "completion": "c2", "label": False},
    ])
    assert import_job(dataset, path).status == Job.Status.SUCCEEDED
    labels = [(f.payload["label"], Response.objects.get(pk=f.payload["response"]).text)
              for f in Feedback.objects.filter(kind="binary").order_by("id")]
    assert labels == [(True, "c1"), (False, "c2")]


def test_one_bad_row_writes_nothing_and_reports_lines(dataset, tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [
        {"instruction": "ok", "output": "fine"}, "{oops", {"instruction": "ok2"}, {"output": "no instruction"},
    ])
    job = import_job(dataset, path)
    assert job.status == Job.Status.FAILED
    assert "2 of 4 rows are invalid, so nothing was written" in job.error
    assert [(e["line"], e["field"]) for e in job.result["errors"]] == [(2, None), (4, "instruction")]
    assert Record.objects.count() == 0


def test_skip_invalid_lands_good_rows_and_stores_the_report(dataset, tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [
        {"instruction": "ok", "output": "fine"}, "{oops", {"instruction": "ok2"},
    ])
    job = import_job(dataset, path, skip_invalid=True)
    assert job.status == Job.Status.SUCCEEDED
    assert job.result["records"] == 2 and job.result["invalid"] == 1
    assert job.result["errors"][0]["line"] == 2
    assert Record.objects.count() == 2


def test_repeated_external_id_in_one_file_is_an_error(dataset, tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"id": "a", "text": "1"}, {"id": "a", "text": "2"}])
    job = import_job(dataset, path)
    assert job.status == Job.Status.FAILED
    assert job.result["errors"] == [{"line": 2, "field": "id", "reason": "external id 'a' repeats line 1"}]


def test_reimport_with_external_ids_does_not_duplicate(dataset, tmp_path):
    rows = [{"id": i, "instruction": f"i{i}", "output": f"o{i}"} for i in range(30)]
    path = write_jsonl(tmp_path / "x.jsonl", rows)
    assert import_job(dataset, path).result["records"] == 30
    rows.append({"id": 30, "instruction": "new", "output": "row"})
    second = import_job(dataset, write_jsonl(tmp_path / "x.jsonl", rows))
    assert second.result["records"] == 1 and second.result["skipped_existing"] == 30
    assert Record.objects.filter(dataset=dataset).count() == 31
    assert Response.objects.filter(record__dataset=dataset).count() == 31


def test_whole_file_errors_fail_cleanly(dataset, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    job = import_job(dataset, empty)
    assert job.status == Job.Status.FAILED and "empty" in job.error
    assert job.result["errors"][0]["line"] is None
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello")
    job = import_job(dataset, unknown)
    assert job.status == Job.Status.FAILED and "cannot tell the file format" in job.error


@pytest.fixture
def interrupt_batch(monkeypatch):
    """interrupt_batch(n, exc): the n-th write_batch call raises exc instead of writing."""
    from corpus import importing

    def install(n: int, exc: BaseException):
        real = importing.write_batch
        calls = {"n": 0}

        def write_batch(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise exc
            return real(*args, **kwargs)

        monkeypatch.setattr(importing, "write_batch", write_batch)
        return lambda: monkeypatch.setattr(importing, "write_batch", real)

    return install


def test_resume_skips_committed_batches(dataset, tmp_path, settings, interrupt_batch):
    """A second attempt starts after the checkpointed line and writes each row once."""
    settings.WINNOW_IMPORT_BATCH_SIZE = 10
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": f"doc {i}"} for i in range(35)])
    params = ImportRequest(dataset_id=dataset.pk, path=str(path), filename=path.name).as_params()
    job = create_job(KIND, params=params, enqueue=False)

    # First attempt: die (as a killed worker would) after two committed batches.
    restore = interrupt_batch(3, SystemExit("worker killed"))
    with pytest.raises(SystemExit):
        run_job(job.pk)
    restore()
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.state["line"] == 20
    assert Record.objects.count() == 20

    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED)  # what stale recovery does
    run_job(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 2
    assert job.result["records"] == 35
    texts = sorted(Record.objects.values_list("prompt", flat=True))
    assert texts == sorted(f"doc {i}" for i in range(35))


def test_cancel_mid_import_removes_what_it_wrote(dataset, tmp_path, settings, interrupt_batch):
    settings.WINNOW_IMPORT_BATCH_SIZE = 5
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": f"doc {i}"} for i in range(20)])
    params = ImportRequest(dataset_id=dataset.pk, path=str(path), filename=path.name).as_params()
    job = create_job(KIND, params=params, enqueue=False)
    interrupt_batch(3, JobCancelled())
    run_job(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert Record.objects.count() == 0


def test_bad_row_after_committed_batches_still_leaves_nothing(dataset, tmp_path, settings):
    settings.WINNOW_IMPORT_BATCH_SIZE = 10
    rows = [{"text": f"doc {i}"} for i in range(45)]
    rows[37] = {"txt": "typo"}
    rows.append("{not json")
    job = import_job(dataset, write_jsonl(tmp_path / "x.jsonl", rows))
    assert job.status == Job.Status.FAILED
    assert [e["line"] for e in job.result["errors"]] == [38, 46]  # every bad row is reported
    assert Record.objects.count() == 0  # the three batches written before line 38 are gone


def test_progress_total_is_known_from_the_start(dataset, tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": f"doc {i}"} for i in range(12)])
    job = import_job(dataset, path)
    assert (job.progress_done, job.progress_total) == (12, 12)


def test_parsing_in_a_child_process_gives_the_same_result(dataset, tmp_path, settings):
    """Big files are parsed in a spawned child; force that path on a small file."""
    settings.WINNOW_IMPORT_PARALLEL_BYTES = 0
    settings.WINNOW_IMPORT_BATCH_SIZE = 7
    rows = [{"id": i, "prompt": f"p{i}", "chosen": "c", "rejected": "r"} for i in range(30)]
    job = import_job(dataset, write_jsonl(tmp_path / "x.jsonl", rows))
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert (job.result["records"], job.result["feedback"]) == (30, 30)
    bad = import_job(dataset, write_jsonl(tmp_path / "y.jsonl", [{"text": "ok"}, "{oops"]))
    assert bad.status == Job.Status.FAILED and bad.result["errors"][0]["line"] == 2
    empty = tmp_path / "z.jsonl"
    empty.write_text("\n")
    assert "empty" in import_job(dataset, empty).error


def _tiny_rows(path, count):
    path.write_text("".join(f'{{"text": "doc {i}"}}\n' for i in range(count)))
    return path


def test_a_parsing_child_that_dies_fails_the_import_instead_of_hanging(tmp_path):
    """The child killed mid-file (OOM killer, kill -9): the chunks it sent still arrive, then
    the reader says how it ended; before, the parent waited on the queue for ever. After the
    pause the hand-over queue is full and the child is stuck halfway through sending a chunk
    (each is larger than the pipe's buffer): the kill cuts that message off, which is what
    once left a multiprocessing.Queue reader blocked in CI."""
    import multiprocessing
    import signal
    import time

    from corpus.formats import ImportOptions, parsed_chunks_in_child

    chunks = parsed_chunks_in_child(_tiny_rows(tmp_path / "x.jsonl", 60_000), "jsonl", None, ImportOptions())
    assert len(next(chunks)) == 2000
    time.sleep(1)
    (child,) = multiprocessing.active_children()
    os.kill(child.pid, signal.SIGKILL)
    received = 1
    with pytest.raises(RuntimeError, match=r"the parsing process failed: it exited with code -9"):
        for _ in chunks:
            received += 1
    assert received < 30  # the file has 30 chunks; the child was killed before sending them all


def test_leaving_the_chunks_early_stops_the_child_and_the_reader(tmp_path):
    import multiprocessing
    import threading

    from corpus.formats import ImportOptions, parsed_chunks_in_child

    chunks = parsed_chunks_in_child(_tiny_rows(tmp_path / "x.jsonl", 60_000), "jsonl", None, ImportOptions())
    next(chunks)
    chunks.close()
    assert multiprocessing.active_children() == []
    assert not any(t.name == "import-receiver" for t in threading.enumerate())
