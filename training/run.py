"""The trainer process: `python -m training.run <run id> [--job <job id>]`.

Started by the training job (training.jobs), never imported by the web or worker process.
Under `accelerate launch` every rank runs this; only rank 0 writes metrics and artifacts.
Exit status: 0 done, 3 cancelled after saving a checkpoint, anything else failed.
"""

import argparse
import os
import sys
import traceback


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.run")
    parser.add_argument("run_id", type=int)
    parser.add_argument("--job", type=int, default=None)
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "winnow.settings")
    # Nothing is ever fetched from a hub: models are local folders.
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(name, "1")
    import django

    django.setup()
    from jobs.models import JobLogEntry
    from training.trainer import EXIT_FAILED, train_run

    try:
        return train_run(args.run_id, args.job)
    except Exception:
        text = traceback.format_exc(limit=20)
        print(text, file=sys.stderr, flush=True)
        if args.job:
            JobLogEntry.objects.create(job_id=args.job, level=JobLogEntry.Level.ERROR,
                                       message="trainer failed:\n" + text[-4000:])
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
