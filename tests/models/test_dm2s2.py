from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from mmsets.data.manifest import Manifest
from mmsets.data.sequences import SequenceBatch, SequenceDataset
from mmsets.metrics import multilabel_metrics
from mmsets.models.dm2s2 import (AdditiveSimilarity, DM2S2Config, DotProductSimilarity, IntraMRA, NoAttention,
                                 dm2s2, encoder_only)
from mmsets.store import RaggedWriter
from mmsets.runs.loop import configure_optimizer, warmup_cosine
from mmsets.plan.spec import TrainConfig
from mmsets.tasks import class_weights, weighted_bce

H, M, C = 8, 3, 4


def sequence(counts, generator):
    """[CLS] m0 [SEP] m1 [SEP] ... with counts[m] tokens of modality m: (states (T, H), modality (T,))."""
    modality = [-1]
    for m, k in enumerate(counts):
        modality += [m] * k + [-1]
    modality = torch.tensor(modality)
    return torch.randn(len(modality), H, generator=generator), modality


def pad(items, t_max=None, junk=True):
    """Pad (states, modality) pairs into a batch; padding holds NaN/huge junk and stray modality ids."""
    t_max = t_max or max(len(m) for _, m in items)
    hidden = torch.full((len(items), t_max, H), float("nan") if junk else 0.0)
    hidden[:, ::2] = 1e9 if junk else 0.0
    modality = torch.randint(0, M, (len(items), t_max)) if junk else torch.full((len(items), t_max), -1)
    mask = torch.zeros(len(items), t_max, dtype=torch.bool)
    for b, (x, m) in enumerate(items):
        hidden[b, : len(m)], modality[b, : len(m)], mask[b, : len(m)] = x, m, True
    return SequenceBatch(hidden, mask, modality, torch.zeros(len(items), C), [str(b) for b in range(len(items))])


COUNTS = [(2, 3, 1), (0, 4, 0), (1, 0, 2), (5, 1, 1), (0, 0, 0)]  # the last item has no modality token at all


def make_items(counts=COUNTS, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [sequence(c, g) for c in counts]


def make_model(**kwargs):
    torch.manual_seed(0)
    return dm2s2(hidden_size=H, n_classes=C, n_modalities=M, head_hidden=(6,), **kwargs).eval()


def reference(model, hidden, modality):
    """Eq. 3-6 item by item, with explicit loops over the modalities (no masks, no padding)."""
    skip = float(model.config.residual)
    x = hidden.clone()
    spans = {m: (modality == m).nonzero().squeeze(1) for m in range(M) if (modality == m).any()}
    intra = torch.zeros(len(modality))
    if model.config.intra:
        for m, idx in spans.items():
            a = torch.softmax(model.intra.similarities[m](x[idx]), dim=0)  # Eq. 9
            intra[idx] = a
            x[idx] = a[:, None] * x[idx] + skip * x[idx]  # Eq. 10
    inter = torch.zeros(M)
    if model.config.inter and spans:
        present = list(spans)
        summary = torch.stack([x[spans[m]].sum(0) for m in present])  # Eq. 12
        b = torch.softmax(model.inter.similarity(summary), dim=0)  # Eq. 13
        for m, w in zip(present, b):
            inter[m] = w
            x[spans[m]] = w * x[spans[m]] + skip * x[spans[m]]  # Eq. 14
    tokens = modality >= 0
    pooled = x[tokens].mean(0) if tokens.any() else torch.zeros(H)  # Eq. 5
    return model.rho(pooled[None])[0], intra, inter


# ------------------------------------------------------------------------------- similarity

def test_similarities_match_their_formulas():
    torch.manual_seed(0)
    x = torch.randn(5, H)
    add = AdditiveSimilarity(H)
    torch.testing.assert_close(add(x), torch.tanh(x @ add.proj.weight.T) @ add.query)  # Eq. 8, no bias
    assert add.proj.bias is None and add.proj.weight.shape == (H, H)  # W in R^{d x d}
    dot = DotProductSimilarity(H, attn_dim=4)
    torch.testing.assert_close(dot(x), (x @ dot.proj.weight.T) @ dot.query / 2.0)
    assert AdditiveSimilarity(H, 4, bias=True).proj.bias.shape == (4,)


# -------------------------------------------------------------------------------- the model

@pytest.mark.parametrize("kwargs", [{}, {"residual": False}, {"similarity": "dot"}, {"intra": False},
                                    {"inter": False}, {"pooling": "max"}])
def test_forward_and_weights_equal_the_papers_equations_item_by_item(kwargs):
    model = make_model(**kwargs)
    items = make_items()
    batch = pad(items, t_max=20)
    logits = model(batch)
    weights = model.attention(batch)
    assert logits.shape == (len(items), C) and torch.isfinite(logits).all()
    for b, (x, m) in enumerate(items):
        if model.config.pooling != "mean":
            break
        expected, intra, inter = reference(model, x, m)
        torch.testing.assert_close(logits[b], expected, rtol=1e-5, atol=1e-5)
        if model.config.intra:
            torch.testing.assert_close(weights["intra"][b, : len(m)], intra)
        if model.config.inter:
            torch.testing.assert_close(weights["inter"][b], inter)


def test_weights_sum_to_one_over_a_modality_and_over_present_modalities():
    model = make_model()
    batch = pad(make_items(), t_max=20)
    weights = model.attention(batch)
    intra, inter = weights["intra"], weights["inter"]
    assert intra.shape == batch.modality.shape and inter.shape == (len(COUNTS), M)
    for b, counts in enumerate(COUNTS):
        modality = batch.modality[b].masked_fill(~batch.token_mask[b], -1)
        for m, k in enumerate(counts):
            total = intra[b][modality == m].sum()
            torch.testing.assert_close(total, torch.tensor(float(k > 0)))  # 1, or 0 for an empty modality
            assert (inter[b, m] > 0) == (k > 0)  # an absent modality gets no weight
        assert (intra[b][modality < 0] == 0).all()  # specials and padding
        torch.testing.assert_close(inter[b].sum(), torch.tensor(float(sum(counts) > 0)))
    assert torch.isfinite(intra).all() and torch.isfinite(inter).all()


def test_padding_specials_and_batch_mates_do_not_change_anything():
    model = make_model()
    items = make_items()
    clean = model(pad(items, junk=False))
    junk = model(pad(items, t_max=25))
    torch.testing.assert_close(junk, clean, rtol=0, atol=0)
    alone = torch.cat([model(pad([item], junk=False)) for item in items])
    torch.testing.assert_close(alone, clean, rtol=1e-5, atol=1e-6)
    # The specials' states reach the prediction only through the encoder (Eq. 5 pools L modality tokens).
    g = torch.Generator().manual_seed(5)
    respecial = [(torch.where((m < 0)[:, None], torch.randn(x.shape, generator=g), x), m) for x, m in items]
    torch.testing.assert_close(model(pad(respecial)), clean, rtol=1e-5, atol=1e-6)


def test_no_nan_in_gradients_with_empty_modalities_and_empty_items():
    model = make_model().train()
    batch = pad(make_items(), t_max=20)
    batch.hidden.requires_grad_(True)
    model(batch).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(batch.hidden.grad[batch.token_mask]).all()
    assert (batch.hidden.grad[~batch.token_mask] == 0).all()


def test_invariant_to_token_order_and_to_renaming_modalities():
    """The model part sees a set of (state, modality) tokens: any reordering of the tokens gives the
    same prediction; renaming modality m to pi(m) does too when IntraMRA's W^(m), q^(m) follow."""
    model = make_model()
    items = make_items()
    logits, weights = model(pad(items)), model.attention(pad(items))
    g = torch.Generator().manual_seed(1)
    shuffled = []
    for x, m in items:
        order = torch.randperm(len(m), generator=g)
        shuffled.append((x[order], m[order]))
    torch.testing.assert_close(model(pad(shuffled)), logits, rtol=1e-5, atol=1e-6)

    pi = torch.tensor([2, 0, 1])  # modality m is called pi[m]
    renamed = [(x, torch.where(m >= 0, pi[m.clamp(min=0)], m)) for x, m in items]
    state = model.state_dict()
    for m in range(M):
        for key in ("proj.weight", "query"):
            state[f"intra.similarities.{pi[m]}.{key}"] = model.state_dict()[f"intra.similarities.{m}.{key}"]
    other = make_model()
    other.load_state_dict(state)
    torch.testing.assert_close(other(pad(renamed)), logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(other.attention(pad(renamed))["inter"][:, pi], weights["inter"])
    assert not torch.allclose(model(pad(renamed)), logits)  # the parameters are per modality (Eq. 9)


def test_ablation_switches():
    full = make_model()
    batch = pad(make_items())
    assert set(full.attention(batch)) == {"intra", "inter"}
    assert isinstance(full.intra, IntraMRA) and len(full.intra.similarities) == M  # W^(m), q^(m) per modality
    no_intra = make_model(intra=False)
    assert isinstance(no_intra.intra, NoAttention) and set(no_intra.attention(batch)) == {"inter"}
    assert not any(name.startswith("intra.") for name in no_intra.state_dict())
    assert set(make_model(inter=False).attention(batch)) == {"intra"}
    assert make_model(intra=False, inter=False).attention(batch) == {}
    # Feature importance: the InterMRA weights, one row of M shares per item like every family's explain.
    assert torch.equal(full.explain(batch), full.attention(batch)["inter"])
    assert full.explain(batch).shape == (len(make_items()), M)
    with pytest.raises(NotImplementedError, match="InterMRA"):
        make_model(inter=False).explain(batch)

    no_residual = make_model(residual=False)
    no_residual.load_state_dict(full.state_dict())  # same weights, only Eq. 10 and 14 differ
    assert not torch.allclose(no_residual(batch), full(batch))

    bare = make_model(intra=False, inter=False)
    baseline = encoder_only(hidden_size=H, n_classes=C, n_modalities=M, head_hidden=(6,), modality_embedding=False)
    baseline.load_state_dict(bare.state_dict())
    torch.testing.assert_close(baseline.eval()(batch), bare(batch))


def test_encoder_only_tells_modalities_apart_with_its_token_types():
    torch.manual_seed(0)
    model = encoder_only(hidden_size=H, n_classes=C, n_modalities=M).eval()
    assert model.token_type.weight.shape == (M, H)
    items = make_items()
    swapped = [(x, torch.where(m >= 0, (m + 1) % M, m)) for x, m in items]
    assert not torch.allclose(model(pad(items))[:4], model(pad(swapped))[:4])
    torch.testing.assert_close(model(pad(items, t_max=20)), model(pad(items, junk=False)))


def test_config_checks_and_round_trip():
    model = make_model(similarity="dot", attn_dim=5)
    again = dm2s2(**asdict(model.config))
    again.load_state_dict(model.state_dict())
    assert again.config == model.config
    assert dm2s2(model.config, residual=False).config.residual is False
    assert dm2s2(**{**asdict(model.config), "head_hidden": [3, 2]}).config.head_hidden == (3, 2)
    with pytest.raises(ValueError, match="similarity"):
        DM2S2Config(H, C, M, similarity="cosine")
    with pytest.raises(ValueError, match="pooling"):
        DM2S2Config(H, C, M, pooling="median")
    with pytest.raises(ValueError, match="prior"):
        DM2S2Config(H, C, M, prior=1.0)
    with pytest.raises(ValueError, match="modality id 3"):
        model(pad([(torch.randn(3, H), torch.tensor([-1, 3, -1]))], junk=False))


# --------------------------------------------------------------------------------- training

def synthetic_store(path, n, seed):
    """Label k is set when one token of modality 1 is pushed along direction k; modalities 0
    and 2 hold only noise."""
    rng = np.random.default_rng(seed)
    directions = np.random.default_rng(99).normal(size=(2, H)) * 3.0
    labels = []
    with RaggedWriter(path, extractor="tokens", dim=H, attrs={"modalities": ["decoy", "signal", "noise"]},
                      fields={"modality": ((), "int8")}) as w:
        for i in range(n):
            counts = rng.integers(1, 7, size=3)
            hidden, modality = sequence(counts, torch.Generator().manual_seed(int(rng.integers(1 << 30))))
            hidden, modality = hidden.numpy(), modality.numpy()
            item_labels = []
            for k in range(2):
                if rng.random() < 0.5:
                    hidden[rng.choice(np.flatnonzero(modality == 1))] += directions[k]
                    item_labels.append(f"y{k}")
            w.add(f"i{i}", hidden, modality=modality)
            labels.append(item_labels)
    return labels


def train_briefly(model, train_ds, epochs=15, lr=1e-2):
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=lr, warmup_epochs=2, class_weighting="inv")
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, collate_fn=train_ds.collate,
                        generator=torch.Generator().manual_seed(0))
    optimizer = configure_optimizer(model, cfg)
    scheduler = warmup_cosine(optimizer, cfg.warmup_epochs * len(loader), cfg.epochs * len(loader))
    weights = class_weights(train_ds.labels, cfg.class_weighting)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny steps: more threads only contend on a busy machine
    try:
        for _ in range(cfg.epochs):
            for batch in loader:
                loss = weighted_bce(model(batch), batch.labels, weights)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@torch.no_grad()
def f1_micro(model, ds):
    batch = ds.collate([ds[i] for i in range(len(ds))])
    return multilabel_metrics(ds.labels, torch.sigmoid(model(batch)).numpy() >= 0.5)["f1_micro"], batch


def test_learns_a_label_carried_by_one_modality(tmp_path):
    n_train, n_dev = 400, 150
    labels = synthetic_store(tmp_path / "tokens.h5", n_train + n_dev, seed=0)
    frame = pd.DataFrame({"id": [f"i{i}" for i in range(len(labels))], "image": None, "labels": labels,
                          "split": ["train"] * n_train + ["dev"] * n_dev})
    manifest = Manifest(frame, ["y0", "y1"])
    train_ds = SequenceDataset(manifest, tmp_path / "tokens.h5", "train")
    dev_ds = SequenceDataset(manifest, tmp_path / "tokens.h5", "dev")

    torch.manual_seed(0)
    model = dm2s2(hidden_size=H, n_classes=2, n_modalities=3, head_hidden=(16,), dropout=0.0)
    assert f1_micro(model.eval(), dev_ds)[0] < 0.1  # the prior bias starts every label at p = 0.01
    f1, batch = f1_micro(train_briefly(model, train_ds), dev_ds)
    assert f1 > 0.85
    inter = model.attention(batch)["inter"].mean(0)
    assert inter.argmax() == 1 and inter[1] > 0.5  # InterMRA finds the modality that carries the labels
