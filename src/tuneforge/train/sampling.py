"""A length-grouped training sampler that gives the same order for the same seed and epoch.

Transformers' `LengthGroupedSampler` draws from the global torch RNG when the epoch starts. After a resume
that RNG holds the state saved mid-epoch, so the resumed epoch visits the examples in a different order
and the run no longer ends where an uninterrupted one would. Seeding each epoch from (seed, epoch) fixes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from transformers.trainer_pt_utils import get_length_grouped_indices


class SeededLengthGroupedSampler(torch.utils.data.Sampler[int]):
    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))
