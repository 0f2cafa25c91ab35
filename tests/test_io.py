"""Atomic writes leave the old file or the new one, never half of either; JSON lines survive a
torn last line."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from babel_interp import io


def test_json_round_trips_numpy_scalars_and_paths(tmp_path):
    path = io.write_json_atomic(tmp_path / "a" / "x.json", {"n": np.int64(3), "p": tmp_path})
    assert json.loads(path.read_text()) == {"n": 3, "p": str(tmp_path)}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.json"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "x.json"
    io.write_json_atomic(path, {"v": 1})
    with pytest.raises(TypeError, match="not JSON serializable"):
        io.write_json_atomic(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_an_exception_inside_atomic_open_leaves_nothing_new(tmp_path):
    path = tmp_path / "t.txt"
    with pytest.raises(RuntimeError):
        with io.atomic_open(path) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert not path.exists() and os.listdir(tmp_path) == []


def test_tables_in_both_formats(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    csv = io.write_table_atomic(tmp_path / "t", df, "csv")
    assert csv.name == "t.csv" and pd.read_csv(csv).equals(df)
    pq = io.write_table_atomic(tmp_path / "t", df, "parquet")
    assert pq.name == "t.parquet" and pd.read_parquet(pq).equals(df)
    with pytest.raises(ValueError, match="'csv' or 'parquet'"):
        io.write_table_atomic(tmp_path / "t", df, "xlsx")


def test_jsonl_skips_a_torn_last_line_unless_strict(tmp_path):
    path = io.write_jsonl_atomic(tmp_path / "m.jsonl", [{"step": 1}, {"step": 2}])
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"step": 3, "lo')  # a writer killed mid-line
    assert io.read_jsonl(path) == [{"step": 1}, {"step": 2}]
    with pytest.raises(ValueError, match=r"m.jsonl:3: not a JSON line"):
        io.read_jsonl(path, strict=True)
    assert io.read_jsonl(tmp_path / "missing.jsonl") == []


def test_append_jsonl_flushes_each_record(tmp_path):
    path = tmp_path / "log.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        io.append_jsonl(f, {"a": 1})
        # Readable before the file is closed: a crash now loses nothing written.
        assert io.read_jsonl(path) == [{"a": 1}]
