"""What runs one job on one GPU: weights, pipeline, encoding, outputs."""
