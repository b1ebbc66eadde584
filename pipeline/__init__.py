"""Land-cover mapping from Landsat time series with a semi-supervised ConvLSTM.

The package holds all the logic of the Snakemake workflow; every stage is a module with a
``main(argv=None) -> int`` entry point run as ``python -m pipeline.<stage>``.
"""

from __future__ import annotations

__version__ = "0.1.0"
