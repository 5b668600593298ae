"""Evaluation: classification metrics, convergence figures from a run's history, scoring a saved
run on new data, reading label-noise transition matrices, and the figures."""
