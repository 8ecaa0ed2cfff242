"""The shared core every stage uses: errors, atomic writes, rejects, Parquet row writing,
the manifest contract and the tokenizer helpers. Nothing here imports a stage."""
