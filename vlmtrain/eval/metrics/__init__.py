"""Metrics as pure functions, each checked against its official script: recall.py (Recall@K,
pessimistic ties), vqa.py (VQAv2 accuracy), oven.py (OVEN harmonic means), captioning.py
(pycocoevalcap)."""
