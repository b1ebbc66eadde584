"""Self-contained HTML reports (figures embedded as PNG) of maps and model comparisons."""
