"""Every model family by name: its config dataclass, its builder, the kind of input it reads and what a
training job of it asks the scheduler for.

Adding a family is one entry here (and its settings in the workflow's schema, which a test holds to the
config dataclass). The runs ask this table; nothing else tells the families apart. The family's module
is imported on use, so the workflow can ask for a family's resources when it builds the DAG (the rule of
:mod:`mmsets.plan`: no numpy, no torch).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable

from mmsets.runtime import Resources

SETS = "sets"  # sets of feature vectors, one set per modality (mmsets.data.sets.SetDataset)
SEQUENCE = "sequence"  # one token-state sequence whose spans are the modalities (mmsets.data.sequences)

# The config fields each kind of input fills in from the data; never set from a run spec.
DATA_FIELDS: dict[str, tuple[str, ...]] = {
    SETS: ("input_dims", "input_kinds", "n_classes"),
    SEQUENCE: ("hidden_size", "n_modalities", "n_classes", "encoder"),
}


TRAINED = Resources(threads=2, mem_mb=8000, gpu=True)  # an nn.Module, trained on the GPU when there is one
FITTED = Resources(threads=2, mem_mb=4000, gpu=False)  # fitted on CPUs


@dataclass(frozen=True)
class Family:
    name: str
    module: str  # where the family lives, imported on use
    config_name: str  # its config dataclass
    builder: str  # the config's fields as keywords -> an nn.Module or a FittedModel
    inputs: str  # SETS or SEQUENCE
    resources: Resources = TRAINED
    # Where the family's paper trains it differently from the shared recipe (mmsets.plan.spec.TrainConfig);
    # config.yaml's training.families.<name> overrides it, a dataset's own training keys override both.
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict)
    # How it reads a modality an item lacks (the model module says it at length); the report shows it beside
    # the scores without each modality (mmsets.report.robustness).
    missing: str = ""

    @property
    def config(self) -> type:
        return getattr(importlib.import_module(self.module), self.config_name)

    @property
    def build(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.builder)

    @property
    def settings(self) -> list[str]:
        """The config fields a run spec may set: all but those the data gives."""
        return [f.name for f in dataclasses.fields(self.config) if f.name not in DATA_FIELDS[self.inputs]]

    def data_config(self, ds: Any, n_outputs: int) -> dict[str, Any]:
        """The config fields the data gives: input sizes (and kinds), number of outputs."""
        if self.inputs == SEQUENCE:
            return {"hidden_size": ds.hidden_size, "n_modalities": ds.n_modalities, "n_classes": n_outputs,
                    "encoder": ds.encoder}
        return {"input_dims": ds.input_dims, "input_kinds": ds.input_kinds, "n_classes": n_outputs}

    def check(self, settings: dict[str, Any], features: list[str]) -> None:
        """Build the config from ``settings`` and stand-in data fields: a bad setting fails before any data is read."""
        data = ({"hidden_size": 8, "n_modalities": 1, "encoder": {"model": "stand-in", "layer": -1}}
                if self.inputs == SEQUENCE
                else {"input_dims": {f: 1 for f in features}})
        self.config(n_classes=2, **data, **settings)


DM2S2_RECIPE = {"class_weighting": "inv"}  # DM2S2 Sec. IV-C, Eq. 16: w_k = 1 / N_k

ZERO_FILL = "its pooled vector as zeros"
EMPTY_SPAN = "an empty span: its [SEP] follows the previous one (Sec. III-B)"

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("dmms", "mmsets.models.dmms", "DMMSConfig", "dmms", SETS,
           missing="no placeholder: the item's set has no element of it (Sec. 3.3)"),
    Family("late_fusion", "mmsets.models.fusion", "LateFusionConfig", "late_fusion", SETS,
           missing=f"{ZERO_FILL} and its presence flag 0"),
    Family("gmu", "mmsets.models.fusion", "GMUConfig", "gmu", SETS, missing=f"{ZERO_FILL} (no presence flag)"),
    Family("lightgbm", "mmsets.models.fitted", "LightGBMConfig", "lightgbm", SETS, FITTED,
           missing=f"{ZERO_FILL} and its element count 0 (counts: true)"),
    Family("logreg", "mmsets.models.fitted", "LogRegConfig", "logreg", SETS, FITTED,
           missing=f"{ZERO_FILL} and its element count 0 (counts: true), standardised by the training mean and "
                   "scale"),
    Family("dm2s2", "mmsets.models.dm2s2", "DM2S2Config", "dm2s2", SEQUENCE, recipe=DM2S2_RECIPE,
           missing=EMPTY_SPAN),
    Family("encoder_only", "mmsets.models.dm2s2", "EncoderOnlyConfig", "encoder_only", SEQUENCE, recipe=DM2S2_RECIPE,
           missing=EMPTY_SPAN),
)}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"model {name!r} is not one of {sorted(FAMILIES)}")
    return FAMILIES[name]


def build_model(name: str, **config: Any) -> Any:
    return family(name).build(**config)
