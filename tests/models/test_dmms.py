import json
import math
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from mmsets.data.manifest import Manifest
from mmsets.data.sets import SetBatch, SetDataset
from mmsets.models.dmms import DMMSConfig, dmms
from mmsets.models.parts import IndexCNNEncoder, IndexEncoder, ModalityEncoder, SetPooling
from mmsets.store import RaggedStore, RaggedWriter
from mmsets.runs.learner import learner_for
from mmsets.runs.loop import fit
from mmsets.plan.spec import TrainConfig

def make_batch(counts_a, counts_b, seed=0):
    """Two modalities, a (dim 5) and b (dim 3), with the given number of elements per item."""
    g = torch.Generator().manual_seed(seed)
    modalities = {}
    for name, counts, dim in (("a", counts_a, 5), ("b", counts_b, 3)):
        s_max = max(1, max(counts))
        x = torch.randn(len(counts), s_max, dim, generator=g)
        mask = torch.arange(s_max)[None, :] < torch.tensor(counts)[:, None]
        modalities[name] = (x.masked_fill(~mask[..., None], 1e9), mask)
    return SetBatch(modalities, torch.zeros(len(counts_a), 4), [str(i) for i in range(len(counts_a))])


def make_model(pooling="max", **kwargs):
    torch.manual_seed(0)
    return dmms(input_dims={"a": 5, "b": 3}, n_classes=4, d_model=16, head_hidden=(8,), pooling=pooling,
                **kwargs).eval()


def test_output_shape_and_empty_item_gives_finite_logits():
    logits = make_model()(make_batch([2, 0, 1, 0], [1, 3, 0, 0]))
    assert logits.shape == (4, 4)
    assert torch.isfinite(logits).all()


def test_last_bias_encodes_the_prior():
    model = make_model(prior=0.01)
    assert torch.allclose(model.rho[-1].bias, torch.full((4,), -math.log(99.0)))
    assert torch.allclose(torch.sigmoid(model.rho[-1].bias), torch.full((4,), 0.01))


@pytest.mark.parametrize("pooling", ["max", "min"])
def test_feature_importance_rows_sum_to_one_and_empty_item_is_zero(pooling):
    shares = make_model(pooling).explain(make_batch([2, 0, 1, 0, 3], [1, 3, 0, 0, 2]))
    assert shares.shape == (5, 2)
    torch.testing.assert_close(shares[[0, 1, 2, 4]].sum(dim=1), torch.ones(4))
    assert torch.equal(shares[3], torch.zeros(2))
    assert torch.equal(shares[1], torch.tensor([0.0, 1.0]))  # only b present
    assert torch.equal(shares[2], torch.tensor([1.0, 0.0]))  # only a present


def test_feature_importance_of_a_dominant_modality_is_one():
    model = make_model("max")
    with torch.no_grad():  # phi_a outputs ELU(5) = 5 everywhere, phi_b ELU(-5) < 0: a wins every max
        for name, bias in (("a", 5.0), ("b", -5.0)):
            model.encoders[name].fc.weight.zero_()
            model.encoders[name].fc.bias.fill_(bias)
    shares = model.explain(make_batch([1, 3], [2, 1]))
    assert torch.equal(shares, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    model.pool = SetPooling("min")  # and b wins every min
    assert torch.equal(model.explain(make_batch([1, 3], [2, 1])), torch.tensor([[0.0, 1.0], [0.0, 1.0]]))


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_explain_refuses_pooling_that_selects_nothing(pooling):
    with pytest.raises(NotImplementedError, match=pooling):
        make_model(pooling).explain(make_batch([1], [1]))


def test_forward_is_invariant_to_element_order():
    model = make_model("max")
    batch = make_batch([3, 2], [2, 1])
    x, mask = batch.modalities["a"]
    flipped = SetBatch({**batch.modalities, "a": (x[:, [2, 1, 0]], mask[:, [2, 1, 0]])}, batch.labels, batch.ids)
    torch.testing.assert_close(model(batch), model(flipped))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="pooling"):
        DMMSConfig(input_dims={"a": 3}, n_classes=2, pooling="median")
    with pytest.raises(KeyError, match="b"):
        dmms(input_dims={"a": 5, "b": 3}, n_classes=2)(SetBatch({"a": make_batch([1], [1]).modalities["a"]},
                                                                 torch.zeros(1, 2), ["0"]))


def mixed_batch(ids_per_item, counts_b, seed=0):
    """Index modality 'obj' (ids < 7, padded with 0) beside float modality 'b' (dim 3)."""
    batch = make_batch([1] * len(counts_b), counts_b, seed)
    s_max = max(1, max(len(s) for s in ids_per_item))
    ids = torch.zeros(len(ids_per_item), s_max, dtype=torch.long)
    mask = torch.zeros(len(ids_per_item), s_max, dtype=torch.bool)
    for i, s in enumerate(ids_per_item):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = True
    return SetBatch({"obj": (ids, mask), "b": batch.modalities["b"]}, batch.labels, batch.ids)


def mixed_model(**kwargs):
    torch.manual_seed(0)
    return dmms(input_dims={"obj": 7, "b": 3}, input_kinds={"obj": "index"}, n_classes=4, d_model=16,
                head_hidden=(8,), **kwargs).eval()


def test_index_modality_uses_a_lookup_table_and_pools_with_the_rest():
    model = mixed_model()
    assert isinstance(model.encoders["obj"], IndexEncoder) and isinstance(model.encoders["b"], ModalityEncoder)
    assert model.config.input_kinds == {"obj": "index", "b": "float"}
    assert model.encoders["obj"].embed.weight.shape == (7, 16)
    batch = mixed_batch([[3, 5, 3], [], [6], []], [1, 2, 0, 0])
    logits = model(batch)
    assert logits.shape == (4, 4) and torch.isfinite(logits).all()
    shares = model.explain(batch)
    torch.testing.assert_close(shares[:3].sum(dim=1), torch.ones(3))
    assert torch.equal(shares[3], torch.zeros(2)) and shares[1, 0] == 0 and shares[2, 1] == 0
    # Padding ids (0) never matter: the same sets padded further give the same logits.
    ids, mask = batch.modalities["obj"]
    wider = SetBatch({**batch.modalities, "obj": (torch.cat([ids, torch.zeros(4, 2, dtype=torch.long)], 1),
                                                   torch.cat([mask, torch.zeros(4, 2, dtype=torch.bool)], 1))},
                     batch.labels, batch.ids)
    torch.testing.assert_close(model(wider), logits)


def test_text_cnn_index_encoder_gives_one_element_per_item_with_ids():
    model = mixed_model(index_encoder="text_cnn")
    assert isinstance(model.encoders["obj"], IndexCNNEncoder)
    batch = mixed_batch([[3, 5, 3], [], [6], []], [1, 2, 0, 0])
    x, mask, modality = model.encode(batch)
    assert (modality == 0).sum() == 1  # all of an item's ids become one element
    assert mask[:, 0].tolist() == [True, False, True, False]  # an item without ids has none
    shares = model.explain(batch)
    assert shares[1, 0] == 0 and shares[2, 1] == 0 and torch.equal(shares[3], torch.zeros(2))
    ids, id_mask = batch.modalities["obj"]
    wider = SetBatch({**batch.modalities, "obj": (torch.cat([ids, torch.full((4, 4), 2)], 1),  # ids past the mask
                                                   torch.cat([id_mask, torch.zeros(4, 4, dtype=torch.bool)], 1))},
                     batch.labels, batch.ids)
    torch.testing.assert_close(model(wider), model(batch))
    with pytest.raises(ValueError, match="index_encoder"):
        mixed_model(index_encoder="bag")


def test_index_config_round_trips_through_a_weights_only_checkpoint(tmp_path):
    model = mixed_model(pooling="min")
    torch.save({"config": asdict(model.config), "state_dict": model.state_dict()}, tmp_path / "model.pt")
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    json.dumps(checkpoint["config"])  # plain builtins all the way down
    assert checkpoint["config"]["input_kinds"] == {"obj": "index", "b": "float"}
    again = dmms(**checkpoint["config"]).eval()
    again.load_state_dict(checkpoint["state_dict"])
    batch = mixed_batch([[1], [2, 4]], [1, 0])
    torch.testing.assert_close(again(batch), model(batch))


def test_kind_mismatch_and_bad_kinds_are_named():
    with pytest.raises(TypeError, match="'obj'.*input_kinds"):
        dmms(input_dims={"obj": 7, "b": 3}, n_classes=4)(mixed_batch([[1]], [1]))
    with pytest.raises(ValueError, match=r"input_kinds\['obj'\]: 'token'"):
        DMMSConfig(input_dims={"obj": 7}, input_kinds={"obj": "token"}, n_classes=2)
    with pytest.raises(ValueError, match=r"\['c'\] are not in input_dims"):
        DMMSConfig(input_dims={"obj": 7}, input_kinds={"c": "index"}, n_classes=2)


@pytest.mark.parametrize("index_encoder", ["lookup", "text_cnn"])
def test_dmms_learns_from_an_index_and_a_float_modality(tmp_path, index_encoder):
    """Label p iff object id 3 is in the set (index modality); q iff some float element has x[0] > 1."""
    rng = np.random.default_rng(0)
    ids, splits, labels = [], [], []
    with RaggedWriter(tmp_path / "obj.h5", extractor="objects", dim=1, dtype="float32",
                      attrs={"kind": "index", "num_embeddings": 8}) as obj, \
            RaggedWriter(tmp_path / "vec.h5", extractor="vec", dim=4) as vec:
        for split, n in (("train", 300), ("dev", 100), ("test", 20)):
            for i in range(n):
                item_id = f"{split}{i}"
                objects = rng.integers(1, 8, size=int(rng.integers(0, 4)))
                vectors = rng.normal(size=(int(rng.integers(0, 3)), 4))
                obj.add(item_id, objects.astype(np.float32)[:, None])
                vec.add(item_id, vectors)
                ids.append(item_id)
                splits.append(split)
                labels.append([name for name, on in (("p", 3 in objects), ("q", (vectors[:, 0] > 1).any())) if on])
    frame = pd.DataFrame({"id": ids, "split": splits, "image": [None] * len(ids), "labels": labels})
    manifest = Manifest(frame, ["p", "q"])
    stores = {"obj": RaggedStore(tmp_path / "obj.h5"), "vec": RaggedStore(tmp_path / "vec.h5")}
    train_ds, dev_ds = (SetDataset(manifest, stores, split) for split in ("train", "dev"))
    for store in stores.values():
        store.close()
    torch.manual_seed(0)
    model = dmms(input_dims=train_ds.input_dims, input_kinds=train_ds.input_kinds, n_classes=2, d_model=32,
                 head_hidden=(32,), index_encoder=index_encoder)
    result = fit(model, train_ds, dev_ds, TrainConfig(epochs=15, batch_size=32, lr=1e-2, warmup_epochs=1,
                                                      top1_rule=False, device="cpu"))
    assert result.dev["f1_micro"] > 0.9
    shares = learner_for(model).explain(dev_ds, 256).shares
    assert shares.shape == (len(dev_ds), 2)
