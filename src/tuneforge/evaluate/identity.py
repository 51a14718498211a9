"""Identity terms moved to `tuneforge.augment.identity` (data preparation and augmentation need them too, and sit
below evaluation). This name keeps `is_missing_group` importable for code not yet updated; import it from there."""

from tuneforge.augment.identity import is_missing_group

__all__ = ["is_missing_group"]
