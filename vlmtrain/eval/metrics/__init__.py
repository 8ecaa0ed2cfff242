"""Metrics as pure functions, each checked against its official script: recall.py (Recall@K,
pessimistic ties), vqa.py (VQAv2 accuracy), oven.py (OVEN harmonic means), captioning.py
(pycocoevalcap).

Constants that option defaults name live here, light to import (the CLI declares its options
from vlmtrain.eval.options at start-up, before numpy is needed)."""

DEFAULT_KS = (1, 5, 10)  # Recall@K's K, as the papers report them
