"""Control characters at prepare: refused in ids, labels and categorical values naming the line
and the column, removed and counted in text columns."""

import json

import pytest

from mmsets.data.manifest import read_manifest
from mmsets.data.table import TableError, load_table, write_table_manifest

COLUMNS = {"id_column": "id", "image_column": "image", "text_columns": ["slogan"],
           "categorical_columns": ["naturalness"], "label_column": "parallel", "task": "binary"}
ROWS = [("ad-1", "a.png", "Soak up the sun", "4", "parallel"), ("ad-2", "b.png", "Never sleeps", "5", "non-parallel"),
        ("ad-3", "", "Ride the waves", "3", "parallel")]


def write_csv(tmp_path, rows):
    path = tmp_path / "ads.csv"
    lines = ["id,image,slogan,naturalness,parallel", *(",".join(row) for row in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def with_cell(row: int, column: int, value: str) -> list[tuple[str, ...]]:
    rows = [list(r) for r in ROWS]
    rows[row][column] = value
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("column, name, value", [
    (0, "id", "ad-\x002"),
    (3, "naturalness", "5\x00"),
    (4, "parallel", "non\x1b-parallel"),
    (1, "image", "b\x00.png"),
])
def test_a_control_character_is_refused_naming_line_and_column(tmp_path, column, name, value):
    path = write_csv(tmp_path, with_cell(1, column, value))
    with pytest.raises(TableError) as err:
        load_table(path, **COLUMNS)
    message = str(err.value)
    assert message.startswith(f"{path}:3: column {name!r}: control character ") and "\n" not in message
    assert repr(value) in message


def test_a_nul_id_in_json_lines_is_refused(tmp_path):
    rows = [{"id": "a\x00", "image": None, "slogan": "x", "naturalness": 1, "parallel": "yes"},
            {"id": "b", "image": None, "slogan": "y", "naturalness": 2, "parallel": "no"}]
    path = tmp_path / "ads.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(TableError, match=r"ads.jsonl:1: column 'id': control character '\\x00' at character 2"):
        load_table(path, **COLUMNS)


def test_a_nul_in_a_json_list_of_labels_is_refused(tmp_path):
    rows = [{"id": "a", "genres": ["Drama", "Com\x00edy"]}, {"id": "b", "genres": ["Drama"]}]
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(TableError, match=r"items.jsonl:1: column 'genres': control character"):
        load_table(path, id_column="id", image_column=None, label_column="genres", task="multilabel")


def test_text_keeps_tab_and_newline_and_loses_other_controls_counted(tmp_path):
    path = write_csv(tmp_path, with_cell(0, 2, '"Soak\x00 up\tthe\x1b sun\nnow"'))
    manifest = write_table_manifest(path, tmp_path / "manifest.parquet", **COLUMNS)
    assert manifest.frame["text_slogan"][0] == "Soak up\tthe sun\nnow"
    assert manifest.extra["control_characters_removed"] == {"slogan": 1}
    assert read_manifest(tmp_path / "manifest.parquet").extra["control_characters_removed"] == {"slogan": 1}


def test_a_text_of_control_characters_alone_is_empty(tmp_path):
    path = write_csv(tmp_path, with_cell(0, 2, "\x00\x00"))
    assert load_table(path, **COLUMNS).frame["text_slogan"][0] is None


def test_a_clean_table_removes_nothing(tmp_path):
    assert load_table(write_csv(tmp_path, ROWS), **COLUMNS).extra["control_characters_removed"] == {}

