"""Stage 3: download. pipeline.py runs img2dataset (img2dataset_run.py starts it in a child whose
entry, child.py, wraps img2dataset's downloader with the fetch guard of guard.py, so that every
worker of every distributor checks redirects and caps bytes and time) and repacks its output
into our shards; results.py reads img2dataset's per-shard outputs."""
