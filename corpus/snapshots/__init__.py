"""Snapshot builders: a recipe -> an immutable, reproducible training dataset folder.

    recipe.py       the typed recipe (kind, sources, filters, policies, split, output, card)
    stream.py       records with their responses and usable feedback, streamed in chunks
    aggregation.py  several judgements on one item -> one answer (majority, mean, Bradley-Terry)
    builders.py     one small builder per kind: SFT, preference, binary (KTO), text
    writer.py       seeded grouped split, external shuffle, files, manifest, card, lineage
    job.py          the `corpus.snapshot` job and `start_snapshot_build`
"""
