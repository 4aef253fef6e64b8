"""The refusal of a single-file checkpoint, apart from models.single_file so that the family
layouts it reads (models/*_layout.py) can raise it without importing it back."""


class SingleFileRefused(ValueError):
    """A single-file checkpoint that cannot be loaded here, with the file and the reason."""
