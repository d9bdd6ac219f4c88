"""The words a setting may take where the plan (schema checks, run specs) and the code that acts on them
(mmsets.metrics, mmsets.tasks, mmsets.runs) must agree: one list each."""

CLASS_WEIGHTINGS = ("inv_sqrt", "inv", "none")  # inv_sqrt: DMMS; inv (1/N_k): DM2S2
DECISION_RULES = ("f1_micro", "f1_macro", "paper")  # mmsets.metrics.Decision
# binary and multiclass: the training.select metrics a decision can be tuned for (others tune for accuracy)
SINGLE_LABEL_DECISION_METRICS = ("accuracy", "balanced_accuracy", "f1_macro")
SINGLE_LABEL_LOSSES = ("sigmoid", "softmax")
