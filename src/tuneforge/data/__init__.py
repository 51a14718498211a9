"""Loading, validating, splitting and balancing task data."""
