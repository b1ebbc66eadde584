"""Accuracy assessment (pure functions, no I/O).

``metrics`` (confusion matrix, OA, kappa, F1, quantity/allocation disagreement of the compared
pixels), ``area`` (Olofsson et al. 2014 area-adjusted accuracy and error-adjusted areas from a
stratified random sample) and ``sampling`` (sample size, allocation and drawing of such a sample).
"""

from __future__ import annotations
