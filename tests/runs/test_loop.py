"""The epoch loop on its own: a minimal TrainedModel over a plain dataset, no model family."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from mmsets.models.parts import TrainedModel
from mmsets.runs.loop import fit, warmup_cosine
from mmsets.plan.spec import TrainConfig
from mmsets.tasks import MultiLabelTask


@dataclass
class Batch:
    x: torch.Tensor
    labels: torch.Tensor

    def to(self, device):
        return Batch(self.x.to(device), self.labels.to(device))

    def __len__(self):
        return len(self.x)


class Points(torch.utils.data.Dataset):
    """Two labels: a iff x0 > 0, b iff x1 > 0; what the loop needs of a dataset and nothing else."""

    label_names = ["a", "b"]

    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(n, 4)).astype(np.float32)
        self.labels = (self.x[:, :2] > 0).astype(np.float32)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.labels[i]

    @staticmethod
    def collate(items):
        return Batch(torch.as_tensor(np.stack([x for x, _ in items])), torch.as_tensor(np.stack([y for _, y in items])))


class Linear(TrainedModel):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.out = nn.Linear(4, 2)

    @property
    def output_layer(self):
        return self.out

    def forward(self, batch):
        return self.out(batch.x)


def test_fit_learns_and_keeps_the_best_dev_epoch():
    train, dev = Points(256, 0), Points(128, 1)
    model = Linear()
    result = fit(model, train, dev, TrainConfig(epochs=8, batch_size=32, lr=0.05, warmup_epochs=1))
    assert result.dev["f1_micro"] > 0.9
    assert len(result.history) == 8 and 1 <= result.best_epoch <= 8
    best = result.history[result.best_epoch - 1]["dev_f1_micro"]
    assert best == max(h["dev_f1_micro"] for h in result.history)
    # the model holds the chosen epoch's weights, and so does the result
    for key, value in model.state_dict().items():
        assert torch.equal(value.cpu(), result.state_dict[key])
    assert result.selection == "f1_micro" and result.decision.threshold is not None


def test_patience_stops_when_dev_stops_improving():
    train, dev = Points(64, 0), Points(32, 1)
    result = fit(Linear(), train, dev, TrainConfig(epochs=20, batch_size=32, lr=1e-30, warmup_epochs=0, patience=3),
                 MultiLabelTask(Points.label_names))
    assert result.best_epoch == 1 and len(result.history) == 1 + 3  # steps below float32's precision never improve


def test_fit_refuses_an_empty_split():
    with pytest.raises(ValueError, match="need train and dev items"):
        fit(Linear(), Points(8, 0), Points(0, 1), TrainConfig(epochs=1))


def test_lr_schedule_warms_up_then_decays_to_zero():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1e-3)
    scheduler = warmup_cosine(optimizer, warmup_steps=10, total_steps=50)
    lrs = []
    for _ in range(50):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(5e-4)
    assert lrs[10] == pytest.approx(1e-3)
    assert lrs[30] == pytest.approx(5e-4)  # cosine halfway
    assert lrs[50] == pytest.approx(0.0, abs=1e-12)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))
    assert all(a > b for a, b in zip(lrs[10:50], lrs[11:51]))
