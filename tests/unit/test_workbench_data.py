"""nemoguard eval's data: the generic format, review labels, selection, digests, and typed errors with file + line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from langchain_nemoguard.core.errors import InvalidInputError
from langchain_nemoguard.workbench.data import DataSetError, load_generic, load_labels
from langchain_nemoguard.workbench.datasets import load_dataset

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "workbench"


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --- the generic format ------------------------------------------------------------------------------------------


def test_generic_csv_reads_text_label_category_language() -> None:
    ds = load_generic(FIXTURES / "generic.csv")
    assert [e.id for e in ds.examples] == ["q1", "q2", "q3"]
    assert [e.unsafe for e in ds.examples] == [False, True, False]
    assert ds.examples[1].categories == ("Violence", "Threat")
    assert [e.language for e in ds.examples] == ["en", "en", "es"]
    assert all(e.target == "prompt" and e.response is None for e in ds.examples)


def test_generic_jsonl_pairs_are_response_harm_unless_the_row_says_prompt() -> None:
    ds = load_generic(FIXTURES / "pairs.jsonl")
    first, second, third = ds.examples
    assert (first.target, first.response, first.unsafe) == (
        "response",
        "Why did the chicken cross the road?",
        False,
    )
    assert second.id == "p2" and second.unsafe
    # no id: <file>:<line>, counting the blank line before it
    assert third.id == "pairs.jsonl:4" and third.target == "prompt" and third.unsafe


def test_json_array_and_gzip_by_content(tmp_path: Path) -> None:
    rows = [{"text": "hello", "label": "benign"}, {"text": "bad", "label": "harmful"}]
    plain = _write(tmp_path / "set.json", json.dumps(rows))
    assert [e.unsafe for e in load_generic(plain).examples] == [False, True]
    # gzip is recognised by its magic bytes, whatever the name says
    disguised = _write(tmp_path / "set2.jsonl", gzip.compress(b'{"text": "x", "label": 1}\n'))
    assert load_generic(disguised).examples[0].unsafe


def test_image_rows_resolve_paths_relative_to_the_data_file(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "img" / "a.png")
    data = _write(
        tmp_path / "images.jsonl",
        json.dumps({"prompt": "what is this?", "image": "img/a.png", "label": "safe"}) + "\n",
    )
    ex = load_generic(data).examples[0]
    assert ex.images == (tmp_path / "img" / "a.png",)
    before = load_generic(data).digest
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "img" / "a.png")
    assert load_generic(data).digest != before  # the digest covers the image bytes


# --- typed errors: file and line ---------------------------------------------------------------------------------


def _error(path: Path, spec: str | None = None) -> DataSetError:
    with pytest.raises(DataSetError) as info:
        load_dataset(spec or str(path))
    err = info.value
    assert isinstance(err, InvalidInputError)  # the CLI reports it as a usage error (exit 2)
    return err


def test_invalid_json_names_file_line_and_column(tmp_path: Path) -> None:
    p = _write(tmp_path / "bad.jsonl", '{"text": "a", "label": "safe"}\n{"text": "b", "label": \n')
    err = _error(p)
    assert (err.path, err.line) == (str(p), 2)
    assert str(err).startswith(f"{p}:2: invalid JSON")
    assert "column" in str(err)


def test_binary_file_is_refused_with_the_line_of_the_first_nul(tmp_path: Path) -> None:
    p = _write(tmp_path / "data.csv", b"text,label\nok,safe\n\x00\x01\x02binary")
    err = _error(p)
    assert err.line == 3 and "binary" in str(err)


def test_non_utf8_text_is_refused_with_its_line(tmp_path: Path) -> None:
    p = _write(tmp_path / "latin1.csv", "text,label\ncaf\xe9,safe\n".encode("latin-1"))
    err = _error(p)
    assert err.line == 2 and "not UTF-8" in str(err)


def test_a_directory_is_not_a_data_file(tmp_path: Path) -> None:
    err = _error(tmp_path)
    assert err.path == str(tmp_path) and "directory" in str(err)


def test_missing_csv_column_names_the_column_and_the_header(tmp_path: Path) -> None:
    p = _write(tmp_path / "nolabel.csv", "text,category\nhello,x\n")
    err = _error(p)
    assert err.line == 1
    assert "missing column label" in str(err) and "text, category" in str(err)


def test_missing_field_in_a_jsonl_row_names_its_line(tmp_path: Path) -> None:
    p = _write(tmp_path / "rows.jsonl", '{"text": "a", "label": "safe"}\n{"text": "b"}\n')
    err = _error(p)
    assert err.line == 2 and "no label" in str(err)
    p2 = _write(tmp_path / "rows2.jsonl", '{"label": "safe"}\n')
    assert "no prompt/text" in str(_error(p2))


def test_unknown_label_duplicate_id_short_row_missing_image(tmp_path: Path) -> None:
    assert _error(_write(tmp_path / "a.csv", "text,label\nx,maybe\n")).line == 2
    dup = _error(_write(tmp_path / "b.csv", "id,text,label\n1,x,safe\n2,y,safe\n1,z,safe\n"))
    assert dup.line == 4 and "duplicate id '1' (first on line 2)" in str(dup)
    short = _error(_write(tmp_path / "c.csv", "text,label,language\nx,safe\n"))
    assert short.line == 2 and "fewer fields" in str(short)
    img = _error(_write(tmp_path / "d.jsonl", '{"text": "x", "label": "safe", "image": "nope.png"}\n'))
    assert img.line == 1 and "image not found" in str(img)
    url = _error(
        _write(tmp_path / "e.jsonl", '{"text": "x", "label": "safe", "image": "http://169.254.169.254/x"}\n')
    )
    assert "local files" in str(url)


def test_missing_file_empty_file_unknown_type_corrupt_gzip(tmp_path: Path) -> None:
    assert "no such file" in str(_error(tmp_path / "absent.csv"))
    assert "no labelled examples" in str(_error(_write(tmp_path / "empty.jsonl", "\n\n")))
    assert "unknown data file type" in str(_error(_write(tmp_path / "x.txt", "hello")))
    assert "gzip" in str(_error(_write(tmp_path / "y.jsonl.gz", b"\x1f\x8bnot really gzip")))


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(DataSetError, match="known: xstest, openai-moderation, rtp-lx"):
        load_dataset("no-such-set")


# --- labels written by the review page ---------------------------------------------------------------------------


def _label(record_id: str, label: str, **extra: object) -> str:
    row = {
        "schema": "nemoguard.label/1",
        "record_id": record_id,
        "time": "2026-12-02T10:00:00.000Z",
        "label": label,
        "correct": False,
        "note": "",
        "reviewer": None,
        "policy": "default",
        "stage": "input",
        "content_sha256": "0" * 64,
        "text": None,
    }
    row.update(extra)
    return json.dumps(row) + "\n"


def test_labels_last_one_wins_and_rows_without_text_are_counted_not_judged(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "review-labels.jsonl",
        _label("r1", "unsafe", text={"prompt": "p1", "response": None})
        + _label("r2", "safe")  # no text stored: cannot be judged again
        + _label("r3", "unsafe", stage="output", text={"prompt": "q", "response": "a"}, policy="kids")
        + _label("r1", "safe", text={"prompt": "p1", "response": None}),
    )
    ds = load_dataset(str(p))  # detected by its schema
    by_id = {e.id: e for e in ds.examples}
    assert set(by_id) == {"r1", "r3"}
    assert by_id["r1"].unsafe is False  # the later label
    assert (by_id["r3"].target, by_id["r3"].response, by_id["r3"].policy) == ("response", "a", "kids")
    assert ds.skipped == {"labels without stored text (cannot be judged again)": 1}
    assert load_dataset("labels", path=p).examples == ds.examples


def test_labels_with_a_bad_label_value_name_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path / "l.jsonl", _label("r1", "safe") + _label("r2", "maybe"))
    with pytest.raises(DataSetError) as info:
        load_labels(p)
    assert info.value.line == 2


# --- selection and digests ---------------------------------------------------------------------------------------


def test_select_by_language_subset_sample_and_limit() -> None:
    ds = load_dataset("multijail", path=FIXTURES / "MultiJail.csv")
    assert len(ds) == 20
    de = ds.select(languages=["EN", "zh"])
    assert {e.language for e in de.examples} == {"en", "zh"} and len(de) == 4
    assert {e.subset for e in ds.select(subsets=["openai"]).examples} == {"openai"}
    a = ds.select(sample=5, seed=7)
    assert [e.id for e in a.examples] == [e.id for e in ds.select(sample=5, seed=7).examples]
    assert [e.id for e in a.examples] != [e.id for e in ds.select(sample=5, seed=8).examples]
    assert len(ds.select(sample=5, seed=7, limit=2)) == 2
    assert a.options["sample"] == "5 (seed 7)"
    with pytest.raises(DataSetError, match="selection is empty"):
        ds.select(languages=["xx"])


def test_digest_is_stable_and_follows_labels_and_texts(tmp_path: Path) -> None:
    text = "text,label\na,safe\nb,unsafe\n"
    p = _write(tmp_path / "d.csv", text)
    d1 = load_generic(p).digest
    assert load_generic(p).digest == d1
    _write(p, text.replace("b,unsafe", "b,safe"))
    assert load_generic(p).digest != d1
