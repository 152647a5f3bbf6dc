"""Real public data sets converted into the product's own landing formats, so the unchanged pipeline runs on them.

Each module here exposes ``load(landing: Path, ...) -> dict``: it writes landing files under ``landing`` exactly as
the sources in ``schemas/sources.yaml`` expect them and returns a summary of what it wrote.
"""
