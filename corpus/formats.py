"""Reading import files: file formats, row shapes, and row -> ImportItem.

Pure functions over files and dicts; no database. The import job (corpus.importing) streams
ImportItems (or RowErrors) out of `read_items` twice: once to validate, once to write.

File formats: JSONL (one object a line; also a .json file holding one JSON array), CSV
(header row; nested values such as `messages` as JSON text in the cell), Parquet.
Row shapes, detected from the first row's keys unless named:

    alpaca             instruction, input, output
    dolly              instruction, context, response, category
    sharegpt           conversations: [{from, value}]
    messages           messages: [{role, content}]
    prompt_completion  prompt, completion            (strings, or TRL's conversational lists)
    preference         prompt, chosen, rejected (+ margin)   -> two responses + pairwise feedback
    binary             prompt, completion, label             -> a response + binary feedback
    text               text                                  -> a text record (pre-training)

Every shape also reads `id`/`external_id` (external id), `metadata` (an object) and `model`
(the model that wrote the responses); any other key lands in the record's metadata.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

FILE_FORMATS = ("jsonl", "json", "csv", "parquet")
SHAPES = (
    "alpaca", "dolly", "sharegpt", "messages", "prompt_completion", "preference", "binary",
    "text",
)
SHAPE_KEYS = {
    "alpaca": "instruction, input, output",
    "dolly": "instruction, context, response, category",
    "sharegpt": "conversations",
    "messages": "messages",
    "prompt_completion": "prompt, completion",
    "preference": "prompt, chosen, rejected",
    "binary": "prompt, completion, label",
    "text": "text",
}
COMMON_KEYS = {"id", "external_id", "metadata", "model"}
MAX_EXTERNAL_ID = 255
ROLE_ALIASES = {
    "user": "user", "human": "user",
    "assistant": "assistant", "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant",
    "bing": "assistant", "model": "assistant",
    "system": "system",
}
TRUE_WORDS = {"true", "1", "yes", "y", "t"}
FALSE_WORDS = {"false", "0", "no", "n", "f"}


@dataclass(slots=True)
class RowError:
    line: int | None
    field: str | None
    reason: str

    def as_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "reason": self.reason}

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        return f"{where}: {self.field + ': ' if self.field else ''}{self.reason}"


class ImportFileError(Exception):
    """The file as a whole cannot be read (empty, unknown format, not Parquet, ...)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.error = RowError(None, None, reason)


class _BadRow(Exception):
    def __init__(self, field: str | None, reason: str):
        self.field = field
        self.reason = reason


@dataclass(slots=True)
class ImportResponse:
    text: str
    author_kind: str
    model_name: str = ""


@dataclass(slots=True)
class ImportFeedback:
    kind: str
    # Response references are indices into ImportItem.responses until the writer maps them
    # to database ids; `refs` names the payload keys that hold them.
    payload: dict
    refs: tuple[str, ...]


@dataclass(slots=True)
class ImportItem:
    line: int
    shape: str
    kind: str
    prompt: str
    context: str = ""
    history: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    external_id: str | None = None
    responses: list[ImportResponse] = field(default_factory=list)
    feedback: list[ImportFeedback] = field(default_factory=list)
    # history and metadata as JSON, encoded once by the storability check and reused.
    encoded: tuple[bytes, bytes] | None = None


def item_to_row(item: ImportItem) -> list:
    """A compact, picklable form for the import's write stage. `history` and `metadata` are
    JSON text already: serialising them here keeps that work in the parsing process."""
    return [
        item.line, item.shape, item.kind, item.prompt, item.context,
        *(part.decode() for part in item.encoded or (orjson.dumps(item.history), orjson.dumps(item.metadata))),
        item.external_id,
        [[r.text, r.author_kind, r.model_name] for r in item.responses],
        [[f.kind, f.payload, list(f.refs)] for f in item.feedback],
    ]


@dataclass(frozen=True, slots=True)
class ImportOptions:
    response_author_kind: str = "human"
    model_name: str = ""


# -- file formats ----------------------------------------------------------------------------


def detect_file_format(filename: str, head: bytes) -> str | None:
    """Guess the file format from the name, then from the first bytes."""
    name = filename.lower()
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"),
                        (".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return fmt
    if head.startswith(b"PAR1"):
        return "parquet"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{"):
        return "jsonl"
    if stripped.startswith(b"["):
        return "json"
    return None


def _decode(raw: bytes, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadRow(
            None, f"not valid UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
        ) from None


def _parse_json_object(text: str):
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _BadRow(None, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(value, dict):
        raise _BadRow(None, f"expected a JSON object, got {type(value).__name__}")
    return value


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict | RowError]]:
    with open(path, "rb") as handle:
        for line, raw in enumerate(handle, start=1):
            if line == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                yield line, _parse_json_object(_decode(raw, line))
            except _BadRow as bad:
                yield line, RowError(line, bad.field, bad.reason)


def _iter_json_array(path: Path) -> Iterator[tuple[int, dict | RowError]]:
    head = path.read_bytes()[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"["):  # a .json file that is really JSON Lines
        yield from _iter_jsonl(path)
        return
    raw = path.read_bytes()
    try:
        items = orjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError as exc:
        raise ImportFileError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    for index, item in enumerate(items, start=1):
        if isinstance(item, dict):
            yield index, item
        else:
            yield index, RowError(index, None, f"expected a JSON object, got {type(item).__name__}")


def _iter_csv(path: Path) -> Iterator[tuple[int, dict | RowError]]:
    bad_lines: dict[int, str] = {}
    physical = 0

    def text_lines():
        nonlocal physical
        with open(path, "rb") as handle:
            for raw in handle:
                physical += 1
                if physical == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                try:
                    yield _decode(raw, physical)
                except _BadRow as bad:
                    bad_lines[physical] = bad.reason
                    yield raw.decode("utf-8", errors="replace")

    reader = csv.reader(text_lines())
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise ImportFileError(f"not readable as CSV: {exc}") from None
    if physical in bad_lines:
        raise ImportFileError(f"line {physical}: header {bad_lines[physical]}")
    names = [name.strip() for name in header]
    if len(set(names)) != len(names):
        raise ImportFileError(f"line 1: the header repeats a column name: {header}")
    first = physical + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield first, RowError(first, None, f"not readable as CSV: {exc}")
            return
        line, last = first, physical
        first = physical + 1
        bad = [bad_lines[n] for n in range(line, last + 1) if n in bad_lines]
        if bad:
            yield line, RowError(line, None, bad[0])
            continue
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(names):
            yield line, RowError(line, None, f"has {len(cells)} cells; the header has {len(names)}")
            continue
        # An empty cell is a missing value; nested values are JSON text.
        yield line, {name: cell for name, cell in zip(names, cells) if cell != ""}


def _iter_parquet(path: Path) -> Iterator[tuple[int, dict | RowError]]:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pyarrow.ArrowException, OSError) as exc:
        raise ImportFileError(f"not a readable Parquet file: {exc}") from None
    line = 0
    try:
        for batch in parquet.iter_batches(batch_size=2048):
            for row in batch.to_pylist():
                line += 1
                yield line, {key: value for key, value in row.items() if value is not None}
    except (pyarrow.ArrowException, OSError) as exc:
        yield line + 1, RowError(line + 1, None, f"unreadable Parquet data: {exc}")


READERS = {
    "jsonl": _iter_jsonl, "json": _iter_json_array, "csv": _iter_csv, "parquet": _iter_parquet,
}


# -- shapes ----------------------------------------------------------------------------------


def detect_shape(row: dict) -> str | None:
    keys = set(row)
    if "conversations" in keys:
        return "sharegpt"
    if "messages" in keys:
        return "messages"
    if {"prompt", "chosen", "rejected"} <= keys:
        return "preference"
    if {"prompt", "completion", "label"} <= keys:
        return "binary"
    if {"prompt", "completion"} <= keys:
        return "prompt_completion"
    if "instruction" in keys:
        if keys & {"context", "response", "category"}:
            return "dolly"
        return "alpaca"
    if "text" in keys:
        return "text"
    return None


def _maybe_json(value, key: str):
    """CSV cells hold nested values as JSON text."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise _BadRow(key, f"invalid JSON in the cell: {exc.msg} (column {exc.colno})") from None
    return value


def _text(row: dict, key: str, *, required: bool) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise _BadRow(key, "required field is missing")
        return ""
    if not isinstance(value, str):
        raise _BadRow(key, f"must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise _BadRow(key, "must not be empty")
    return value


def _messages(value, key: str) -> list[dict]:
    value = _maybe_json(value, key)
    if not isinstance(value, list) or not value:
        raise _BadRow(key, "must be a non-empty list of messages")
    messages = []
    for index, message in enumerate(value):
        where = f"{key}[{index}]"
        if not isinstance(message, dict):
            raise _BadRow(where, "must be an object with role and content")
        raw_role = message.get("role", message.get("from"))
        content = message.get("content", message.get("value"))
        if not isinstance(raw_role, str) or raw_role.lower() not in ROLE_ALIASES:
            raise _BadRow(
                where, f"role must be one of user, assistant, system (or human, gpt); got {raw_role!r}"
            )
        if not isinstance(content, str):
            raise _BadRow(where, "content must be a string")
        messages.append({"role": ROLE_ALIASES[raw_role.lower()], "content": content})
    return messages


def _split_prompt(messages: list[dict], key: str) -> tuple[list[dict], str]:
    """history, last user turn."""
    if messages[-1]["role"] != "user":
        raise _BadRow(key, "the prompt must end with a user turn")
    if not messages[-1]["content"].strip():
        raise _BadRow(key, "the last user turn is empty")
    return messages[:-1], messages[-1]["content"]


def _prompt(row: dict, key: str = "prompt") -> tuple[list[dict], str]:
    value = row.get(key)
    if isinstance(value, list) or (isinstance(value, str) and value.startswith("[{")):
        return _split_prompt(_messages(value, key), key)
    return [], _text(row, key, required=True)


def _completion(row: dict, key: str) -> str:
    value = row.get(key)
    if isinstance(value, list) or (isinstance(value, str) and value.startswith("[{")):
        messages = _messages(value, key)
        if any(m["role"] != "assistant" for m in messages):
            raise _BadRow(key, "a conversational completion holds assistant messages only")
        return "\n".join(m["content"] for m in messages)
    return _text(row, key, required=True)


def _label(row: dict) -> bool:
    value = row.get("label")
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    if value is None:
        raise _BadRow("label", "required field is missing")
    raise _BadRow("label", f"must be true or false, got {value!r}")


def _margin(row: dict) -> float | None:
    value = row.get("margin")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _BadRow("margin", f"must be a number, got {value!r}") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise _BadRow("margin", "must be a finite number")
        return value
    raise _BadRow("margin", f"must be a number, got {type(value).__name__}")


def _external_id(row: dict) -> str | None:
    key = "external_id" if "external_id" in row else "id"
    value = row.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _BadRow(key, f"must be a string or an integer, got {type(value).__name__}")
    value = str(value)
    if len(value) > MAX_EXTERNAL_ID:
        raise _BadRow(key, f"is longer than {MAX_EXTERNAL_ID} characters")
    return value


def _metadata(row: dict, used: set[str]) -> dict:
    metadata = _maybe_json(row.get("metadata", {}), "metadata")
    if not isinstance(metadata, dict):
        raise _BadRow("metadata", "must be an object")
    extra = {k: v for k, v in row.items() if k not in used and k not in COMMON_KEYS}
    return {**extra, **metadata}


def _author(row: dict, options: ImportOptions) -> tuple[str, str]:
    model = row.get("model")
    if model is not None:
        if not isinstance(model, str):
            raise _BadRow("model", "must be a string")
        return "model", model
    return options.response_author_kind, options.model_name


def _conversation(row: dict, key: str, options: ImportOptions, shape: str) -> ImportItem:
    if key not in row:
        raise _BadRow(key, "required field is missing")
    messages = _messages(row[key], key)
    responses = []
    if messages[-1]["role"] == "assistant":
        kind, model = _author(row, options)
        responses.append(ImportResponse(messages[-1]["content"], kind, model))
        messages = messages[:-1]
        if not messages:
            raise _BadRow(key, "has an assistant turn but no user turn before it")
    history, prompt = _split_prompt(messages, key)
    return ImportItem(0, shape, "chat", prompt, history=history, responses=responses,
                      metadata=_metadata(row, {key}))


def parse_row(shape: str, row: dict, line: int, options: ImportOptions) -> ImportItem | RowError:
    """One row of a known shape -> an ImportItem, or a RowError saying what is wrong."""
    try:
        item = _parse(shape, row, options)
        _check_storable(shape, item)
        item.line = line
        item.external_id = _external_id(row)
        return item
    except _BadRow as bad:
        return RowError(line, bad.field, bad.reason)


# The row keys each part of an item came from, per shape, so a storage problem names its field.
_PROMPT_KEY = {"alpaca": "instruction", "dolly": "instruction", "sharegpt": "conversations",
               "messages": "messages", "text": "text"}
_CONTEXT_KEY = {"alpaca": "input", "dolly": "context"}
_RESPONSE_KEYS = {"alpaca": ("output",), "dolly": ("response",), "sharegpt": ("conversations",),
                  "messages": ("messages",), "preference": ("chosen", "rejected")}
_NUL = "contains a NUL character (\\u0000), which the database cannot store"


def _check_text(field: str, text: str) -> None:
    if "\x00" in text:
        raise _BadRow(field, _NUL)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _BadRow(field, "is not valid Unicode (it holds a lone surrogate)") from None


def _check_storable(shape: str, item: ImportItem) -> None:
    """Reject what parses as JSON but no database column stores: NUL characters (PostgreSQL
    text and jsonb refuse them), lone surrogates, integers beyond 64 bits."""
    _check_text(_PROMPT_KEY.get(shape, "prompt"), item.prompt)
    _check_text(_CONTEXT_KEY.get(shape, "context"), item.context)
    keys = _RESPONSE_KEYS.get(shape, ("completion",))
    for index, response in enumerate(item.responses):
        _check_text(keys[min(index, len(keys) - 1)], response.text)
    encoded = []
    for value, key in ((item.history, _PROMPT_KEY.get(shape, "prompt")), (item.metadata, "metadata")):
        try:
            encoded.append(orjson.dumps(value))
        except TypeError as error:
            raise _BadRow(key, f"cannot be stored: {error}") from None
        if b"\\u0000" in encoded[-1]:
            raise _BadRow(key, _NUL)
    item.encoded = (encoded[0], encoded[1])


def _parse(shape: str, row: dict, options: ImportOptions) -> ImportItem:
    if shape in ("alpaca", "dolly"):
        answer_key, context_key = ("output", "input") if shape == "alpaca" else ("response", "context")
        prompt = _text(row, "instruction", required=True)
        context = _text(row, context_key, required=False)
        answer = _text(row, answer_key, required=False)
        responses = []
        if answer.strip():
            kind, model = _author(row, options)
            responses.append(ImportResponse(answer, kind, model))
        return ImportItem(0, shape, "instruction", prompt, context=context, responses=responses,
                          metadata=_metadata(row, {"instruction", context_key, answer_key}))
    if shape == "sharegpt":
        return _conversation(row, "conversations", options, shape)
    if shape == "messages":
        return _conversation(row, "messages", options, shape)
    if shape in ("prompt_completion", "binary"):
        history, prompt = _prompt(row)
        completion = _completion(row, "completion")
        kind, model = _author(row, options)
        item = ImportItem(0, shape, "chat" if history else "instruction", prompt, history=history,
                          responses=[ImportResponse(completion, kind, model)],
                          metadata=_metadata(row, {"prompt", "completion", "label"}))
        if shape == "binary":
            item.feedback.append(ImportFeedback(
                "binary", {"response": 0, "label": _label(row), "reason": ""}, ("response",)))
        return item
    if shape == "preference":
        history, prompt = _prompt(row)
        chosen = _completion(row, "chosen")
        rejected = _completion(row, "rejected")
        kind, model = _author(row, options)
        payload = {"a": 0, "b": 1, "choice": "a", "strength": None, "margin": _margin(row)}
        return ImportItem(
            0, shape, "chat" if history else "instruction", prompt, history=history,
            responses=[ImportResponse(chosen, kind, model), ImportResponse(rejected, kind, model)],
            feedback=[ImportFeedback("pairwise", payload, ("a", "b"))],
            metadata=_metadata(row, {"prompt", "chosen", "rejected", "margin"}),
        )
    if shape == "text":
        return ImportItem(0, shape, "text", _text(row, "text", required=True),
                          metadata=_metadata(row, {"text"}))
    raise ValueError(f"unknown shape {shape!r}")


def read_items(
    path: Path,
    *,
    file_format: str,
    shape: str | None = None,
    options: ImportOptions = ImportOptions(),
) -> Iterator[ImportItem | RowError]:
    """Stream a file as ImportItems and RowErrors. Raises ImportFileError for whole-file
    problems: empty file, a shape that cannot be told from the keys, an unreadable file."""
    if file_format not in READERS:
        raise ImportFileError(
            f"unknown file format {file_format!r}; expected one of {', '.join(FILE_FORMATS)}"
        )
    if shape is not None and shape not in SHAPES:
        raise ImportFileError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    any_row = False
    for line, row in READERS[file_format](Path(path)):
        any_row = True
        if isinstance(row, RowError):
            yield row
            continue
        if shape is None:
            shape = detect_shape(row)
            if shape is None:
                expected = "; ".join(f"{name} ({keys})" for name, keys in SHAPE_KEYS.items())
                raise ImportFileError(
                    f"line {line}: cannot tell the format from the keys "
                    f"{', '.join(sorted(row)) or '(none)'}; expected one of: {expected}"
                )
        yield parse_row(shape, row, line, options)
    if not any_row:
        raise ImportFileError("the file is empty: no rows to import")


def estimate_rows(path: Path, file_format: str) -> int:
    """Rows in the file, for a progress bar: exact for Parquet, a line count otherwise."""
    if file_format == "parquet":
        import pyarrow
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (pyarrow.ArrowException, OSError):
            return 0
    lines = 0
    last = b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"  # a last line without its newline
    return max(1, lines - (1 if file_format == "csv" else 0))


def parsed_chunks(
    path: Path, file_format: str, shape: str | None, options: ImportOptions, chunk_rows: int = 2000
) -> Iterator[list]:
    """The import's parse stage: lists of entries, each a spooled item (item_to_row) or an
    error dict. Also rejects an external id the file repeats. Raises ImportFileError."""
    first_line: dict[str, int] = {}
    chunk: list = []
    for item in read_items(path, file_format=file_format, shape=shape, options=options):
        if isinstance(item, RowError):
            chunk.append(item.as_dict())
        elif item.external_id is not None and first_line.setdefault(item.external_id, item.line) != item.line:
            chunk.append(RowError(item.line, "id", f"external id {item.external_id!r} repeats "
                                                   f"line {first_line[item.external_id]}").as_dict())
        else:
            chunk.append(item_to_row(item))
        if len(chunk) >= chunk_rows:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _parse_in_child(connection, args) -> None:
    from jobs.process import die_with_parent

    die_with_parent(orphan_check=True)
    try:
        for chunk in parsed_chunks(*args):
            connection.send(("chunk", chunk))
        connection.send(("done", None))
    except ImportFileError as exc:
        connection.send(("file_error", exc.error.reason))
    except Exception as exc:  # reported to the parent, which fails the job with it
        connection.send(("crash", f"{type(exc).__name__}: {exc}"))
    finally:
        connection.close()


def parsed_chunks_in_child(
    path: Path, file_format: str, shape: str | None, options: ImportOptions
) -> Iterator[list]:
    """parsed_chunks, run in a child process so parsing (Python, one core) overlaps with the
    parent's database writes (SQLite, the other core).

    In the parent a thread receives and unpickles the next chunks while the caller writes the
    last one: sqlite3 lets go of the GIL while SQLite inserts, and unpickling was a sixth of
    the writer's time (docs/import.md has the figures). A bounded hand-over queue keeps memory
    flat. The chunks come through a one-way pipe whose writing end only the child holds, so a
    child that dies, even halfway through sending a chunk, ends the read with EOF rather than
    leaving it waiting for ever."""
    import multiprocessing
    import queue as queues
    import threading

    context = multiprocessing.get_context("spawn")  # no inherited DB connections or threads
    from_child, to_parent = context.Pipe(duplex=False)
    child = context.Process(
        target=_parse_in_child, args=(to_parent, (path, file_format, shape, options)), daemon=True
    )
    child.start()
    to_parent.close()  # the child's end: only its copy stays open
    received: queues.Queue = queues.Queue(maxsize=RECEIVED_CHUNKS)
    stop = threading.Event()

    def hand_over(message) -> bool:
        while not stop.is_set():
            try:
                received.put(message, timeout=0.2)
                return True
            except queues.Full:
                continue
        return False

    def receive() -> None:
        while not stop.is_set():
            try:
                if not from_child.poll(0.2):
                    continue
                message = from_child.recv()
            except (EOFError, OSError):
                child.join(timeout=5)
                hand_over(("crash", f"it exited with code {child.exitcode}"))
                return
            if not hand_over(message) or message[0] != "chunk":
                return

    receiver = threading.Thread(target=receive, name="import-receiver", daemon=True)
    receiver.start()
    try:
        while True:
            kind, payload = received.get()
            if kind == "chunk":
                yield payload
            elif kind == "done":
                return
            elif kind == "file_error":
                raise ImportFileError(payload)
            else:
                raise RuntimeError(f"the parsing process failed: {payload}")
    finally:
        stop.set()
        if child.is_alive():
            child.terminate()  # first: a receiver halfway through a chunk then reads EOF
        child.join(timeout=10)
        receiver.join(timeout=10)
        from_child.close()


RECEIVED_CHUNKS = 8  # parsed chunks (2,000 rows each) the child may run ahead of the writer


def sniff_head(path: Path, size: int = 4096) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


__all__ = [
    "FILE_FORMATS", "SHAPES", "ImportFeedback", "ImportFileError", "ImportItem", "ImportOptions",
    "ImportResponse", "RowError", "detect_file_format", "detect_shape",
    "estimate_rows", "item_to_row", "parsed_chunks", "parsed_chunks_in_child", "parse_row", "read_items", "sniff_head",
]
