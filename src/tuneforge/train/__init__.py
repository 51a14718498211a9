"""Trainer assembly, losses and callbacks."""
