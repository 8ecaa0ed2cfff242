"""Benchmarks for the recipes (`vlmtrain eval TASK`).

Metrics are pure functions, tested against hand-worked values: recall.py (Recall@K, pessimistic
ties), vqa.py (official VQAv2 accuracy), oven.py (official OVEN harmonic means), captioning.py
(pycocoevalcap). report.py is the JSON report every task writes. The tasks_*.py modules read
references from the shards' index and predictions from files or from a checkpoint
(generation.py: batched, optionally trie-constrained decoding with the recipe's own prompts).
"""
