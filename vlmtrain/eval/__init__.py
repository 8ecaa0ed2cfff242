"""Benchmarks for the recipes (`vlmtrain eval TASK`).

metrics/ holds the pure metric functions, tasks/ one module per task (its decoding included;
tasks/prompts.py says which prompt a recipe's checkpoint is asked); options.py one typed options
object per task; report.py is the JSON report every task writes, data.py reads references,
generation.py does batched, optionally trie-constrained decoding, whatever the recipe.
"""
