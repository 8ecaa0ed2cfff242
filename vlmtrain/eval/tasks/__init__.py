"""One module per `vlmtrain eval TASK`: read references from the shards' index, predictions from
a file or a checkpoint, score with eval/metrics and write the JSON report."""
