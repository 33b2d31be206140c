"""Reading import files: every shape, every file format, every kind of bad input."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus.formats import (
    ImportFileError,
    ImportItem,
    ImportOptions,
    RowError,
    detect_file_format,
    detect_shape,
    read_items,
)
from tests.conftest import write_jsonl


def items_of(path, file_format="jsonl", **kw):
    return list(read_items(path, file_format=file_format, **kw))


def one(path, **kw) -> ImportItem:
    (item,) = items_of(path, **kw)
    assert isinstance(item, ImportItem), item
    return item


# -- shapes ------------------------------------------------------------------------------


def test_alpaca(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"instruction": "Translate", "input": "bonjour", "output": "hello", "id": 7},
    ])
    item = one(path)
    assert (item.shape, item.kind, item.prompt, item.context) == ("alpaca", "instruction", "Translate", "bonjour")
    assert [r.text for r in item.responses] == ["hello"]
    assert item.responses[0].author_kind == "human"
    assert item.external_id == "7"
    assert item.metadata == {}


def test_alpaca_without_output_has_no_response(tmp_path):
    item = one(write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Name a colour", "input": "", "output": ""}]))
    assert item.responses == []


def test_dolly_keeps_category_in_metadata(tmp_path):
    item = one(write_jsonl(tmp_path / "d.jsonl", [
        {"instruction": "Q?", "context": "ctx", "response": "A.", "category": "closed_qa"},
    ]))
    assert item.shape == "dolly"
    assert (item.prompt, item.context, item.responses[0].text) == ("Q?", "ctx", "A.")
    assert item.metadata == {"category": "closed_qa"}


def test_sharegpt_multi_turn_keeps_history(tmp_path):
    item = one(write_jsonl(tmp_path / "s.jsonl", [{"conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello!"},
        {"from": "human", "value": "What is 2+2?"},
        {"from": "gpt", "value": "4"},
    ]}]))
    assert item.shape == "sharegpt" and item.kind == "chat"
    assert item.prompt == "What is 2+2?"
    assert item.history == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    assert [r.text for r in item.responses] == ["4"]


def test_messages_ending_with_user_has_no_response(tmp_path):
    item = one(write_jsonl(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": "Tell me a joke"}]}]))
    assert item.shape == "messages" and item.prompt == "Tell me a joke" and item.responses == []


def test_prompt_completion_strings_and_conversational(tmp_path):
    path = write_jsonl(tmp_path / "pc.jsonl", [
        {"prompt": "2+2=", "completion": "4"},
        {"prompt": [{"role": "user", "content": "2+3="}], "completion": [{"role": "assistant", "content": "5"}]},
    ])
    first, second = items_of(path)
    assert (first.shape, first.prompt, first.responses[0].text) == ("prompt_completion", "2+2=", "4")
    assert (second.prompt, second.responses[0].text) == ("2+3=", "5")


def test_preference_becomes_two_responses_and_a_pairwise_judgement(tmp_path):
    item = one(write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "Say hi", "chosen": "Hi!", "rejected": "Go away.", "margin": 2.5},
    ]))
    assert item.shape == "preference"
    assert [r.text for r in item.responses] == ["Hi!", "Go away."]
    (fb,) = item.feedback
    assert fb.kind == "pairwise"
    assert fb.payload == {"a": 0, "b": 1, "choice": "a", "strength": None, "margin": 2.5}


def test_binary_becomes_a_response_and_a_thumb(tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", [
        {"prompt": "Say hi", "completion": "Hi!", "label": True},
        {"prompt": "Say hi", "completion": "No.", "label": False},
    ])
    up, down = items_of(path)
    assert up.feedback[0].kind == "binary" and up.feedback[0].payload["label"] is True
    assert down.feedback[0].payload["label"] is False


def test_text(tmp_path):
    item = one(write_jsonl(tmp_path / "t.jsonl", [{"text": "A document.", "source_url": "x"}]))
    assert (item.shape, item.kind, item.prompt) == ("text", "text", "A document.")
    assert item.metadata == {"source_url": "x"}


def test_model_column_and_options_set_the_author(tmp_path):
    path = write_jsonl(tmp_path / "pc.jsonl", [
        {"prompt": "a", "completion": "b", "model": "gpt-4o"},
        {"prompt": "c", "completion": "d"},
    ])
    first, second = items_of(path, options=ImportOptions("model", "llama-3"))
    assert (first.responses[0].author_kind, first.responses[0].model_name) == ("model", "gpt-4o")
    assert (second.responses[0].author_kind, second.responses[0].model_name) == ("model", "llama-3")


def test_named_shape_overrides_detection(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"instruction": "i", "input": "c", "output": "o"}])
    assert one(path, shape="alpaca").shape == "alpaca"
    errors = items_of(path, shape="text")
    assert isinstance(errors[0], RowError) and errors[0].field == "text"


@pytest.mark.parametrize("keys,shape", [
    ({"conversations"}, "sharegpt"), ({"messages"}, "messages"),
    ({"prompt", "chosen", "rejected"}, "preference"), ({"prompt", "completion", "label"}, "binary"),
    ({"prompt", "completion"}, "prompt_completion"), ({"instruction", "category"}, "dolly"),
    ({"instruction", "input"}, "alpaca"), ({"text"}, "text"), ({"foo"}, None),
])
def test_detect_shape(keys, shape):
    assert detect_shape(dict.fromkeys(keys, "x")) == shape


@pytest.mark.parametrize("name,head,fmt", [
    ("a.jsonl", b"", "jsonl"), ("a.ndjson", b"", "jsonl"), ("a.json", b"", "json"),
    ("A.CSV", b"", "csv"), ("a.parquet", b"", "parquet"), ("blob", b"PAR1....", "parquet"),
    ("blob", b'{"a": 1}', "jsonl"), ("blob", b"\xef\xbb\xbf [", "json"), ("blob", b"hello", None),
])
def test_detect_file_format(name, head, fmt):
    assert detect_file_format(name, head) == fmt


# -- file formats ------------------------------------------------------------------------


def test_csv_with_nested_json_label_words_and_multiline_cells(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text(
        'prompt,completion,label,metadata\n'
        '"Say hi","Hi!\nHow are you?",yes,"{""lang"": ""en""}"\n'
        'Say bye,Bye,0,\n',
        encoding="utf-8",
    )
    first, second = items_of(path, "csv")
    assert first.line == 2 and second.line == 4  # line numbers count the header and the embedded newline
    assert first.responses[0].text == "Hi!\nHow are you?"
    assert first.feedback[0].payload["label"] is True and second.feedback[0].payload["label"] is False
    assert first.metadata == {"lang": "en"}


def test_csv_messages_cell(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('messages\n"[{""role"": ""user"", ""content"": ""hi""}, {""role"": ""assistant"", ""content"": ""yo""}]"\n')
    item = one(path, file_format="csv")
    assert item.prompt == "hi" and item.responses[0].text == "yo"


def test_parquet(tmp_path):
    path = tmp_path / "p.parquet"
    table = pa.table({
        "prompt": ["a", "b"], "chosen": ["good a", "good b"], "rejected": ["bad a", None],
        "margin": [1.0, None],
    })
    pq.write_table(table, path)
    first, second = items_of(path, "parquet")
    assert first.line == 1 and first.feedback[0].payload["margin"] == 1.0
    assert isinstance(second, RowError) and (second.line, second.field) == (2, "rejected")


def test_parquet_with_message_lists(tmp_path):
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"messages": [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]]}), path)
    item = one(path, file_format="parquet")
    assert (item.prompt, item.responses[0].text) == ("q", "a")


def test_json_array_file(tmp_path):
    path = tmp_path / "alpaca_data.json"
    path.write_text(json.dumps([{"instruction": "i1", "input": "", "output": "o1"}, [1, 2]]))
    first, second = items_of(path, "json")
    assert first.prompt == "i1"
    assert isinstance(second, RowError) and "expected a JSON object" in second.reason


def test_json_extension_holding_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "x.json", [{"text": "a"}, {"text": "b"}])
    assert [i.prompt for i in items_of(path, "json")] == ["a", "b"]


def test_blank_lines_and_bom_are_fine(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a"}\n\n   \n{"text": "b"}\n')
    assert [(i.line, i.prompt) for i in items_of(path)] == [(1, "a"), (4, "b")]


# -- bad input ---------------------------------------------------------------------------


def errors_of(path, file_format="jsonl", **kw):
    return [(e.line, e.field, e.reason) for e in items_of(path, file_format, **kw) if isinstance(e, RowError)]


def test_bad_json_is_line_numbered(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", ['{"text": "ok"}', '{"text": ', '[1, 2]', '{"text": "ok"}'])
    (line2, line3) = errors_of(path)
    assert line2[0] == 2 and "invalid JSON" in line2[2]
    assert line3[0] == 3 and "expected a JSON object, got list" in line3[2]


def test_missing_field_and_wrong_type(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [
        {"instruction": "ok", "output": "o"},
        {"input": "no instruction", "output": "o", "instruction": None},
        {"instruction": 42, "output": "o"},
        {"instruction": "   ", "output": "o"},
    ])
    assert errors_of(path) == [
        (2, "instruction", "required field is missing"),
        (3, "instruction", "must be a string, got int"),
        (4, "instruction", "must not be empty"),
    ]


def test_bad_labels_margins_roles_and_ids(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [
        {"prompt": "p", "completion": "c", "label": "maybe"},
        {"prompt": "p", "completion": "c"},
    ])
    assert errors_of(path, shape="binary") == [
        (1, "label", "must be true or false, got 'maybe'"),
        (2, "label", "required field is missing"),
    ]
    path = write_jsonl(tmp_path / "y.jsonl", [
        {"prompt": "p", "chosen": "c", "rejected": "r", "margin": "big"},
        {"prompt": "p", "chosen": "c", "rejected": "r", "id": {"a": 1}},
        {"prompt": "p", "chosen": "c", "rejected": "r", "id": "x" * 300},
    ])
    assert [e[:2] for e in errors_of(path)] == [(1, "margin"), (2, "id"), (3, "id")]
    path = write_jsonl(tmp_path / "z.jsonl", [
        {"messages": [{"role": "robot", "content": "x"}]},
        {"messages": [{"role": "assistant", "content": "x"}]},
        {"messages": []},
        {"messages": [{"role": "user", "content": 3}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "metadata": [1]},
    ])
    assert [e[:2] for e in errors_of(path)] == [
        (1, "messages[0]"), (2, "messages"), (3, "messages"), (4, "messages[0]"), (5, "metadata"),
    ]


def test_bad_encoding_is_line_numbered(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    assert errors_of(path) == [(2, None, "not valid UTF-8 text (byte 0xe9 at column 14)")]
    csv_path = tmp_path / "x.csv"
    csv_path.write_bytes(b"text\nfine\ncaf\xe9\n")
    assert errors_of(csv_path, "csv")[0][:2] == (3, None)


def test_csv_ragged_row(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("instruction,output\na,b\nc,d,e\n")
    assert errors_of(path, "csv") == [(3, None, "has 3 cells; the header has 2")]


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match="empty"):
        items_of(path)


def test_header_only_csv_is_empty(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("instruction,output\n")
    with pytest.raises(ImportFileError, match="empty"):
        items_of(path, "csv")


def test_unknown_shape_names_the_keys_and_the_options(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(ImportFileError) as err:
        items_of(path)
    assert "line 1" in str(err.value) and "answer, question" in str(err.value)
    assert "alpaca (instruction, input, output)" in str(err.value)


def test_not_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_text("not parquet at all")
    with pytest.raises(ImportFileError, match="Parquet"):
        items_of(path, "parquet")


def test_unknown_format_and_shape_names(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "a"}])
    with pytest.raises(ImportFileError, match="unknown file format"):
        items_of(path, "xml")
    with pytest.raises(ImportFileError, match="unknown shape"):
        items_of(path, shape="orca")
