"""Training: config.py (typed YAML config), launch.py (the DeepSpeed launcher command),
entry.py (what each rank runs), trainer.py (the loop), checkpoint.py, metrics_log.py."""
