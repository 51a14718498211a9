"""Model name resolution, loading with a task head, freezing, and the offline catalog."""
