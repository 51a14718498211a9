"""The package version, in a module of its own: reports, model cards and the server stamp it without importing
the package's entry points (`tuneforge.fine_tune`, `tuneforge.load`), which sit above every layer."""

__version__ = "0.1.0"
