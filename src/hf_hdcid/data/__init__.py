"""Data: feature shards (datasets/Arrow), BERT text features, converters and the synthetic benchmark."""
