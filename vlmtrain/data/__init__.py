"""Training data: plan.py decides the equal-steps-per-rank schedule, stream.py reads shards into
batches, train_data.py ties streams and recipes together, transforms.py decodes images."""
