"""Matplotlib set up for files only, shared by the explanation plots (imported lazily: it is slow to load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from tuneforge.artifacts import write_with  # noqa: E402

__all__ = ["plt", "save"]


def save(figure: Any, path: Path, dpi: int = 110) -> None:
    """Write the PNG atomically and free the figure (figures otherwise pile up in long CLI runs)."""
    try:
        write_with(path, lambda target: figure.savefig(target, dpi=dpi))
    finally:
        plt.close(figure)
