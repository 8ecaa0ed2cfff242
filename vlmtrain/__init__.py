"""vlmtrain: a lean DeepSpeed trainer on vlmdata shards."""
