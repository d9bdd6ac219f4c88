import json

import numpy as np
import pandas as pd
import pytest

from mmsets.data.manifest import Manifest, read_manifest, write_manifest
from mmsets.data.sets import SetDataset
from mmsets.extract import ParamsError, make_params, run_extractor
from mmsets.extract.categorical import UNKNOWN, CategoricalParams, Vocabulary, extract_categorical, token
from mmsets.runtime import Runtime
from mmsets.store import RaggedStore


def ads_manifest() -> Manifest:
    """Ads-Parallelity-like ratings: 'glossy' and concreteness 7 occur only outside train."""
    frame = pd.DataFrame({
        "id": [f"ad{i}" for i in range(8)],
        "split": ["train", "train", "train", "train", "dev", "dev", "test", "test"],
        "image": [None] * 8,
        "cat_naturalness": ["natural", "synthetic", None, "natural", "glossy", "synthetic", None, "natural"],
        "cat_concreteness": [2, 10, 2, None, 7, 10, 2, float("nan")],
        "labels": [["parallel"], [], ["parallel"], [], [], ["parallel"], [], ["parallel"]],
    })
    return Manifest(frame, ["parallel"], task="binary", dataset="ads")


def test_vocabulary_from_train_only_with_unknown_for_unseen_and_missing(tmp_path):
    write_manifest(ads_manifest(), tmp_path / "manifest.parquet")
    summary = run_extractor("categorical", tmp_path / "manifest.parquet", tmp_path / "categorical.h5",
                            {"fields": ["naturalness", "concreteness"]},
                            {"device": "cpu", "batch_size": 4, "num_workers": 2, "progress": False})
    # naturalness: <unk>, natural, synthetic -> 0..2; concreteness: <unk>, 2, 10 -> 3..5 (numbers sorted as numbers)
    expected = [[1, 4], [2, 5], [0, 4], [1, 3], [0, 3], [2, 5], [0, 4], [1, 3]]
    assert summary["items"] == summary["with_elements"] == 8 and summary["elements"] == 16
    assert summary["num_embeddings"] == 6 and summary["skipped"] == {}
    assert summary["unknown"] == {"naturalness": {"missing": 2, "unseen": 1},
                                  "concreteness": {"missing": 2, "unseen": 1}}
    with RaggedStore(tmp_path / "categorical.h5") as store:
        assert store.attrs["kind"] == "index" and store.attrs["num_embeddings"] == 6
        assert json.loads(store.attrs["vocab"]) == {"naturalness": [UNKNOWN, "natural", "synthetic"],
                                                    "concreteness": [UNKNOWN, "2", "10"]}
        assert json.loads(store.attrs["offsets"]) == {"naturalness": 0, "concreteness": 3}
        assert [x[:, 0].tolist() for x in store.get(store.ids)] == expected
        assert store.file["data"].dtype == np.float32
        assert [list(x) for x in store.get(["ad4"], "field")] == [["naturalness", "concreteness"]]
        assert [list(x) for x in store.get(["ad4", "ad3"], "value")] == [["glossy", "7"], ["natural", ""]]
        # the model side reads it as an index modality
        ds = SetDataset(read_manifest(tmp_path / "manifest.parquet"), {"cat": store}, None)
    assert ds.input_kinds == {"cat": "index"} and ds.input_dims == {"cat": 6}
    assert [x.tolist() for x in ds.elements["cat"]] == expected


def test_all_fields_by_default_and_min_count(tmp_path):
    summary = extract_categorical(ads_manifest(), tmp_path / "c.h5", CategoricalParams(min_count=2),
                                  Runtime(progress=False))
    with RaggedStore(tmp_path / "c.h5") as store:
        # 'synthetic' and 10 occur once in train: below min_count they are unknown too
        assert json.loads(store.attrs["vocab"]) == {"naturalness": [UNKNOWN, "natural"], "concreteness": [UNKNOWN, "2"]}
        assert store.get(["ad1"])[0][:, 0].tolist() == [0, 2]
    assert summary["unknown"]["naturalness"] == {"missing": 2, "unseen": 3}


def test_tokens_unify_numbers_and_skip_missing():
    assert token(3) == token(3.0) == token("3") == token(np.int64(3)) == "3"
    assert token(0.5) == "0.5" and token(" high ") == "high" and token(True) == "True"
    assert all(token(v) is None for v in (None, float("nan"), pd.NA, "", "  "))
    vocab = Vocabulary.build({"a": ["b", "a", "b", None], "n": [10, 9, 2.0]})
    assert vocab.entries == {"a": [UNKNOWN, "a", "b"], "n": [UNKNOWN, "2", "9", "10"]}
    assert vocab.lookup("n", 9) == (5, "") and vocab.lookup("n", 11) == (3, "unseen")
    assert vocab.lookup("a", None) == (0, "missing") and vocab.lookup("a", UNKNOWN) == (0, "unseen")


def test_errors_name_the_field(tmp_path):
    with pytest.raises(ParamsError, match=r"categorical params.fields: \['colour'\] not in the manifest"):
        extract_categorical(ads_manifest(), tmp_path / "c.h5", CategoricalParams(fields=["colour"]))
    plain = Manifest(pd.DataFrame({"id": ["a"], "split": ["train"], "image": [None], "labels": [[]]}), ["x"])
    with pytest.raises(ParamsError, match="no cat_<field> column"):
        extract_categorical(plain, tmp_path / "c.h5", CategoricalParams())
    no_train = ads_manifest()
    no_train.frame["split"] = "test"
    with pytest.raises(ParamsError, match="no train items"):
        extract_categorical(no_train, tmp_path / "c.h5", CategoricalParams())
    with pytest.raises(ParamsError, match="min_count: 0"):
        make_params("categorical", {"min_count": 0})
    assert not (tmp_path / "c.h5").exists()
