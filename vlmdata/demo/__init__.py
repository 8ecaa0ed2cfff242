"""`vlmdata demo`: a small seeded data set drawn offline (draw.py, captions.py), a tiny seeded
CLIP (clip.py) and the demo's report table (report.py). dataset.py writes the whole example."""
