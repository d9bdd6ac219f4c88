"""Training runs: from a run spec to a run directory.

    run.py         the split/fold loop: datasets, one learner per split or fold, the run directory
    learner.py     the learner protocol (fit / predict / explain): the one place that knows trained
                   models (nn.Module, the epoch loop) from fitted ones (FittedModel)
    loop.py        the epoch loop, which knows no model family
    record.py      RunRecord and ImportanceRecord: metrics.json and feature_importance.json
    checkpoint.py  model.pt, written and read back (weights only)
    evaluate.py    re-scoring a trained run

The run directory's files are described in docs/formats.md.
"""
