"""Encoding, reproducibility metadata, WanGP queue files and post-processing."""
