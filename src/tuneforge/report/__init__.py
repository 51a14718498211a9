"""Plots and reports written into the run directory."""
