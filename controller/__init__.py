"""The farm's driver side; for now the command line."""
