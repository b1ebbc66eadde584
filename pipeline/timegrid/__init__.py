"""The time axis of a series: a regular grid of composites, and the period a map shows."""
