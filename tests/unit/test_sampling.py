"""Length-bucketed batches: every row once per epoch, one length per batch, random batch order,
and less padding than transformers' mega-batch grouping on the real Dolly sample."""

from __future__ import annotations

import itertools
import random
import tempfile
from pathlib import Path

import pytest
import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from components.common.config import DataConfig, TrainConfig
from components.common.modeling import load_model
from components.fine_tune.sampling import LengthBucketedSampler, length_bucketed_batches
from components.fine_tune.train import lora_config, sft_config, to_prompt_completion, trainer_class
from components.prepare_data.prepare import prepare

_rng = random.Random(0)
LENGTHS = [_rng.randint(5, 900) for _ in range(203)]  # 203 = 25 batches of 8, then 3


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def padding_share(batches: list[list[int]], lengths: list[int]) -> float:
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / padded


def test_each_row_once_and_batches_do_not_overlap_in_length():
    batches = length_bucketed_batches(LENGTHS, 8, gen(1))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(LENGTHS)))
    assert chunks(flat, 8) == batches, "DataLoader chunks must be exactly these batches"
    spans = sorted((min(LENGTHS[i] for i in b), max(LENGTHS[i] for i in b)) for b in batches)
    for (_, hi), (lo, _) in itertools.pairwise(spans):
        assert hi <= lo, "a batch holds one contiguous stretch of the length order"


def test_longest_batch_first_short_batch_last():
    batches = length_bucketed_batches(LENGTHS, 8, gen(2))
    assert max(LENGTHS) in [LENGTHS[i] for i in batches[0]]
    assert [len(b) for b in batches] == [8] * 25 + [3]
    assert length_bucketed_batches(LENGTHS[:16], 8, gen(2))[-1] != []  # divides evenly: no stub


def test_batch_order_is_random_but_reproducible():
    a = length_bucketed_batches(LENGTHS, 8, gen(3))
    assert a == length_bucketed_batches(LENGTHS, 8, gen(3))
    assert a != length_bucketed_batches(LENGTHS, 8, gen(4))  # another seed, another order
    middle_means = [sum(LENGTHS[i] for i in x) / len(x) for x in a[1:-1]]
    assert middle_means != sorted(middle_means) and middle_means != sorted(middle_means, reverse=True)


def test_sampler_uses_global_rng_so_seeding_replays_it():
    sampler = LengthBucketedSampler(LENGTHS, 8)
    torch.manual_seed(7)
    first = list(sampler)
    torch.manual_seed(7)
    assert list(sampler) == first and len(sampler) == len(LENGTHS)


def test_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match="batch_size"):
        length_bucketed_batches(LENGTHS, 0)
    assert length_bucketed_batches([], 8) == []


def test_trainer_uses_it_and_pads_less_than_transformers_on_the_dolly_sample(tokenizer):
    model_ref = "embedded://tiny-gemma3"
    rows = prepare(DataConfig(dataset="embedded://dolly-15k-sample.jsonl", base_model=model_ref,
                              max_seq_len=1024), tokenizer).splits["train"]
    cfg = TrainConfig(base_model=model_ref, max_seq_len=1024, per_device_train_batch_size=8,
                      gradient_accumulation_steps=1, max_steps=5)
    with tempfile.TemporaryDirectory() as d:
        trainer = trainer_class()(
            model=load_model(model_ref, device="cpu"), args=sft_config(cfg, Path(d), False, "none"),
            train_dataset=to_prompt_completion(rows), processing_class=tokenizer,
            peft_config=lora_config(cfg))
        loader = trainer.get_train_dataloader()
        lengths = [len(x) for x in trainer.train_dataset["input_ids"]]
        torch.manual_seed(0)
        ours = chunks(list(trainer._get_train_sampler()), 8)
        torch.manual_seed(0)
        theirs = chunks(list(Trainer._get_train_sampler(trainer)), 8)
    assert isinstance(trainer._get_train_sampler(), LengthBucketedSampler)
    assert isinstance(Trainer._get_train_sampler(trainer), LengthGroupedSampler)
    batch = next(iter(loader))
    mask = batch["attention_mask"]
    assert mask.shape[0] == 8 and float(mask.float().mean()) > 0.8, "the collated batch is tight"
    ours_pad, theirs_pad = padding_share(ours, lengths), padding_share(theirs, lengths)
    assert ours_pad < 0.12 < 0.2 < theirs_pad, (ours_pad, theirs_pad)


def test_sampler_follows_the_batch_size_auto_find_backs_off_to():
    """auto_find_batch_size halves the DataLoader's batch on OOM; buckets must shrink with it."""
    from types import SimpleNamespace

    from components.fine_tune.sampling import bucketed_sampler_for

    trainer = SimpleNamespace(train_dataset={"input_ids": [[1] * n for n in LENGTHS]},
                              args=SimpleNamespace(train_batch_size=8, world_size=1),
                              _train_batch_size=4)
    assert bucketed_sampler_for(trainer, None).batch_size == 4
