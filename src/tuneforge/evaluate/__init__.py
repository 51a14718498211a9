"""Scoring a trained run on labelled data."""
