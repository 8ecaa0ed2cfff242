"""The model: vision tower (vision.py) -> projector (projector.py) -> causal LM (lm.py), assembled
in vlm.py from the typed config of config.py; tokens.py adds the special tokens."""
