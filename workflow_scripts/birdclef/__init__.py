"""The importable logic of the BirdCLEF pipeline.

Scripts under ``workflow_scripts/`` are thin entry points for Snakemake's
``script:`` directive; everything they do is a plain function in this package,
so that tests can call it without Snakemake.
"""

SAMPLE_RATE = 32_000
"""The sample rate every stage works at (Hz), as in the Kaggle BirdCLEF data."""
