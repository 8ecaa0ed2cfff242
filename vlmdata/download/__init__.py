"""Stage 3: download. pipeline.py runs img2dataset (img2dataset_run.py starts it in a child whose
entry, child.py, installs the redirect guard of redirects.py) and repacks its output into our
shards; results.py reads img2dataset's per-shard outputs."""
