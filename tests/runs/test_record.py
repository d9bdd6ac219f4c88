"""metrics.json and feature_importance.json: written by RunRecord / ImportanceRecord, read back leniently."""

import json

import pytest

from mmsets.runs.record import ImportanceRecord, RecordError, RunRecord


def test_run_record_round_trips_and_knows_its_configuration(tmp_path):
    record = RunRecord(run="dmms-image_text-max-s2", dataset="demo", task="multilabel", model="dmms",
                       features=["image", "text"], pooling="max", seed=2, group="dmms", combination="image_text",
                       test={"f1_micro": 0.5}, extras={"boosting_rounds": [3]})
    record.write(tmp_path)
    raw = json.loads((tmp_path / "metrics.json").read_text())
    assert raw["boosting_rounds"] == [3] and "extras" not in raw and "variant" not in raw and "cv" not in raw
    again = RunRecord.read(tmp_path)
    assert again == record
    assert again.configuration == "dmms-image_text-max"
    variant = RunRecord(run="b-tokens-dot-s0", model="dm2s2", pooling="mean", group="b", combination="tokens",
                        variant="dot", seed=0)
    assert variant.configuration == "b-tokens-dot"  # pooling names DMMS runs only
    assert RunRecord(run="by-hand").configuration == "by-hand"  # a record that does not say where it comes from


def test_reading_is_lenient_about_values_but_not_about_the_file(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({
        "run": 7, "seed": "zero", "features": "image", "test": {"f1_micro": "high", "f1_macro": float("nan")},
        "history": [1, {"epoch": 1}], "threshold": {"x": 1}}))
    record = RunRecord.read(tmp_path)
    assert record.run == tmp_path.name and record.seed is None and record.features == []
    assert record.test == {} and record.history == [{"epoch": 1}] and record.threshold is None
    (tmp_path / "metrics.json").write_text("[1, 2]")
    with pytest.raises(RecordError, match="not a JSON object"):
        RunRecord.read(tmp_path)
    with pytest.raises(RecordError, match="metrics.json missing"):
        RunRecord.read(tmp_path / "nowhere")


def test_importance_record_round_trips(tmp_path):
    record = ImportanceRecord(["image", "text"], "max", "argmax", {"image": 0.25, "text": 0.75}, 2, ["a", "b"],
                              [[0.5, 0.5], [0.0, 1.0]])
    record.write(tmp_path)
    assert json.loads((tmp_path / "feature_importance.json").read_text())["per_item"]["ids"] == ["a", "b"]
    assert ImportanceRecord.read(tmp_path) == record
    ImportanceRecord(["image"], "sum").write(tmp_path)
    assert ImportanceRecord.read(tmp_path).mean_share is None
    (tmp_path / "feature_importance.json").write_text("{}")
    with pytest.raises(RecordError, match="unreadable"):
        ImportanceRecord.read(tmp_path)


def test_a_checkpoint_written_before_a_setting_was_renamed_still_loads(tmp_path):
    from dataclasses import asdict

    import torch

    from mmsets.plan.families import build_model
    from mmsets.runs.checkpoint import load_checkpoint, save_checkpoint

    model = build_model("gmu", input_dims={"image": 4, "text": 3}, n_classes=2, d_model=8, head_hidden=[6])
    old_config = {("hidden" if k == "head_hidden" else k): v for k, v in asdict(model.config).items()}
    save_checkpoint(tmp_path / "model.pt", {"model": "gmu", "model_config": old_config}, model.state_dict())
    loaded, config = load_checkpoint(tmp_path / "model.pt")
    assert list(loaded.config.head_hidden) == [6] and "hidden" not in config["model_config"]
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
