"""The model families, one file each, and what they share.

    parts.py       phi encoders, SetPooling (psi), SetPredictor (rho): every family's building blocks
    dmms.py        Deep Multi-Modal Sets
    dm2s2.py       DM2S2 (IntraMRA, InterMRA) and the encoder-only baseline
    fusion.py      neural fusion baselines: late fusion, the Gated Multimodal Unit
    fitted.py      fitted baselines on pooled features: LightGBM, logistic regression
    importance.py  feature importance: the shares every family's ``explain`` returns
"""
