"""Every model family by name: its config dataclass, its builder and the kind of input it reads.

Adding a family is one entry here (and its settings in the workflow's schema, which a test holds to the
config dataclass). The runs ask this table; nothing else tells the families apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from mmsets.models.dm2s2 import DM2S2Config, EncoderOnlyConfig, dm2s2, encoder_only
from mmsets.models.dmms import DMMSConfig, dmms
from mmsets.models.fitted import LightGBMConfig, LogRegConfig, lightgbm, logreg
from mmsets.models.fusion import GMUConfig, LateFusionConfig, gmu, late_fusion

SETS = "sets"  # sets of feature vectors, one set per modality (mmsets.data.sets.SetDataset)
SEQUENCE = "sequence"  # one token-state sequence whose spans are the modalities (mmsets.data.sequences)

# The config fields each kind of input fills in from the data; never set from a run spec.
DATA_FIELDS: dict[str, tuple[str, ...]] = {
    SETS: ("input_dims", "input_kinds", "n_classes"),
    SEQUENCE: ("hidden_size", "n_modalities", "n_classes"),
}


@dataclass(frozen=True)
class Family:
    name: str
    config: type  # the config dataclass
    build: Callable[..., Any]  # the config's fields as keywords -> an nn.Module or a FittedModel
    inputs: str  # SETS or SEQUENCE

    @property
    def settings(self) -> list[str]:
        """The config fields a run spec may set: all but those the data gives."""
        return [f.name for f in dataclasses.fields(self.config) if f.name not in DATA_FIELDS[self.inputs]]

    def data_config(self, ds: Any, n_outputs: int) -> dict[str, Any]:
        """The config fields the data gives: input sizes (and kinds), number of outputs."""
        if self.inputs == SEQUENCE:
            return {"hidden_size": ds.hidden_size, "n_modalities": ds.n_modalities, "n_classes": n_outputs}
        return {"input_dims": ds.input_dims, "input_kinds": ds.input_kinds, "n_classes": n_outputs}

    def check(self, settings: dict[str, Any], features: list[str]) -> None:
        """Build the config from ``settings`` and stand-in data fields: a bad setting fails before any data is read."""
        data = ({"hidden_size": 8, "n_modalities": 1} if self.inputs == SEQUENCE
                else {"input_dims": {f: 1 for f in features}})
        self.config(n_classes=2, **data, **settings)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("dmms", DMMSConfig, dmms, SETS),
    Family("late_fusion", LateFusionConfig, late_fusion, SETS),
    Family("gmu", GMUConfig, gmu, SETS),
    Family("lightgbm", LightGBMConfig, lightgbm, SETS),
    Family("logreg", LogRegConfig, logreg, SETS),
    Family("dm2s2", DM2S2Config, dm2s2, SEQUENCE),
    Family("encoder_only", EncoderOnlyConfig, encoder_only, SEQUENCE),
)}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"model {name!r} is not one of {sorted(FAMILIES)}")
    return FAMILIES[name]


def build_model(name: str, **config: Any) -> Any:
    return family(name).build(**config)
