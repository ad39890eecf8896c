"""Length-bucketed batches for dynamic padding: each micro-batch holds rows of nearly one length.

Why not transformers' `LengthGroupedSampler`: it sorts only inside mega-batches of
`min(n // (4 * batch), 50) * batch` random rows, so on a small dataset (the 189-row Dolly sample:
mega-batches of 40) batches still mix short and long rows and 23% of the padded tokens are
padding. Sorting the whole epoch by length and then shuffling the order of the batches (fairseq's
`batch_by_size`) cuts that to about 7%, while the order of the batches, and so of lengths over
training, stays random. Ties are broken at random, so batches change from epoch to epoch. The
price: each step's training loss now depends on its batch's length, so the logged loss is
noisier step to step; the validation loss is the curve to watch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None
) -> list[list[int]]:
    """Indices of `lengths` cut into batches of near-equal length, in a random batch order.

    The longest batch comes first, as in transformers, so an out-of-memory shows in step one;
    the one short batch (when `batch_size` does not divide the data) comes last, so the
    DataLoader's own `batch_size` chunks line up with these batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(lengths)
    if n == 0:
        return []
    shuffled = torch.randperm(n, generator=generator).tolist()
    ordered = sorted(shuffled, key=lambda i: lengths[i], reverse=True)  # stable: random ties
    batches = [ordered[i : i + batch_size] for i in range(0, n, batch_size)]
    first, middle = batches[0], batches[1:]
    last = [middle.pop()] if middle and len(middle[-1]) < batch_size else []
    order = torch.randperm(len(middle), generator=generator).tolist()
    return [first, *(middle[j] for j in order), *last]


class LengthBucketedSampler(Sampler[int]):
    """Yields the indices of `length_bucketed_batches`, flattened, for a DataLoader.

    With `generator=None` it draws from torch's global RNG, as transformers' samplers do, so the
    Trainer's seeding and checkpoint resume (which restores that RNG) replay the same order.
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        for batch in length_bucketed_batches(self.lengths, self.batch_size, self.generator):
            yield from batch


def bucketed_sampler_for(trainer: Any, train_dataset: Any | None) -> LengthBucketedSampler:
    """The sampler a Trainer with `train_sampling_strategy='group_by_length'` should use."""
    dataset = train_dataset if train_dataset is not None else trainer.train_dataset
    lengths = [len(ids) for ids in dataset["input_ids"]]
    # `_train_batch_size` is the DataLoader's: it shrinks when auto_find_batch_size backs off.
    batch_size = getattr(trainer, "_train_batch_size", None) or trainer.args.train_batch_size
    # With several processes accelerate cuts this order into per-device batches and deals them
    # out in turn, so bucket by the micro-batch of all ranks together: ranks 0..N-1 then get the
    # consecutive slices of one bucket, which is the batch one process would have taken.
    return LengthBucketedSampler(lengths, batch_size * max(trainer.args.world_size, 1))
