"""Model catalogue, GPU table, memory requirements, settings schema and pipeline running."""
