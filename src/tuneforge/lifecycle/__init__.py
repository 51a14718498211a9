"""After training: serving a run over HTTP (and, later, the registry, feedback and refresh)."""
