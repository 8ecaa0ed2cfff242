"""Benchmarks for the recipes (`vlmtrain eval TASK`).

metrics/ holds the pure metric functions, tasks/ one module per task; report.py is the JSON report
every task writes, data.py reads references, generation.py does batched, optionally
trie-constrained decoding with the recipe's own prompts.
"""
