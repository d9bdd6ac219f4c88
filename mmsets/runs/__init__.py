"""Training runs: from a run spec to a run directory.

    run.py         the split/fold loop: one learner per split or fold, the run directory
    scoring.py     a run's models read back (model.pt once, every fold), the datasets a family reads,
                   scores and predictions of a manifest's items
    learner.py     the learner protocol (fit / predict / explain): the one place that knows trained
                   models (nn.Module, the epoch loop) from fitted ones (FittedModel)
    loop.py        the epoch loop, which knows no model family
    record.py      RunRecord and ImportanceRecord: metrics.json and feature_importance.json
    checkpoint.py  model.pt, written and read back (weights only)
    evaluate.py    re-scoring a trained run on a split (out of fold for a k-fold run)
    erasure.py     a token-sequence run scored without each modality

The run directory's files are described in docs/formats.md.
"""
