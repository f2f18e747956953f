import numpy as np
import torch

from benchmark.data.loader import make_loaders
from benchmark.runner import prepare_data


def _loaders(load, *sets):
    params = load("DCN_tiny", *sets)
    directory, fmap = prepare_data(params, quiet=True)
    return make_loaders(fmap, directory, params), params


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return [{k: v.clone() for k, v in b.items()} for b in loader]


def test_batches_are_dicts_with_expected_dtypes(load):
    loaders, _ = _loaders(load, "batch_size=128")
    batch = next(iter(loaders["train"]))
    assert batch["C1"].dtype == torch.int64 and batch["I1"].dtype == torch.float32
    assert batch["S1"].shape == (128, 5) and batch["label"].dtype == torch.float32
    assert len(loaders["train"]) == int(np.ceil(loaders["train"].num_samples / 128))


def test_same_seed_same_batches_and_epochs_differ(load):
    a, _ = _loaders(load, "batch_size=128", "seed=5")
    b, _ = _loaders(load, "batch_size=128", "seed=5")
    ea0, eb0 = _epoch(a["train"], 0), _epoch(b["train"], 0)
    assert all(torch.equal(x["C1"], y["C1"]) for x, y in zip(ea0, eb0))
    ea1 = _epoch(a["train"], 1)
    assert not torch.equal(ea0[0]["C1"], ea1[0]["C1"])
    # every row exactly once per epoch
    assert sorted(torch.cat([x["I1"] for x in ea0]).tolist()) == sorted(
        torch.cat([x["I1"] for x in ea1]).tolist()
    )


def test_valid_is_not_shuffled(load):
    loaders, _ = _loaders(load, "batch_size=64")
    first = torch.cat([b["C2"] for b in loaders["valid"]])
    second = torch.cat([b["C2"] for b in loaders["valid"]])
    assert torch.equal(first, second)


def test_streaming_blocks_cover_all_rows_deterministically(load, data_root):
    loaders, _ = _loaders(
        load, "batch_size=100", "data_block_size=200", "streaming=true", f"build_root={data_root}/blocks"
    )
    train = loaders["train"]
    assert train.num_blocks == 8 and train.num_samples == 1600
    e0 = _epoch(train, 0)
    again = _epoch(train, 0)
    assert all(torch.equal(x["C3"], y["C3"]) for x, y in zip(e0, again))
    assert sum(len(b["label"]) for b in e0) == 1600


def test_resume_mid_epoch_yields_the_remaining_batches(load):
    loaders, _ = _loaders(load, "batch_size=128")
    train = loaders["train"]
    full = _epoch(train, 3)
    train.set_epoch(3)
    rest = list(train.iter_from(4))
    assert len(rest) == len(full) - 4
    assert all(torch.equal(x["C1"], y["C1"]) for x, y in zip(full[4:], rest))


def test_ids_held_as_int32_and_widened_per_batch(load):
    loaders, _ = _loaders(load, "batch_size=128")
    train = loaders["train"]
    assert train._data["C1"].dtype == torch.int32 and train._data["S1"].dtype == torch.int32
    assert train._data["I1"].dtype == torch.float32 and train._data["label"].dtype == torch.float32
    batch = next(iter(train))
    assert batch["C1"].dtype == torch.int64 and batch["S1"].dtype == torch.int64
    assert train.tensor_bytes() == sum(v.nelement() * v.element_size() for v in train._data.values())


def test_batches_gather_the_seeded_permutation(load):
    """Per-batch gathers of one permutation: the rows a permuted copy of the split would give."""
    from benchmark.data.loader import _seeded

    loaders, _ = _loaders(load, "batch_size=100", "seed=9")
    train = loaders["train"]
    perm = torch.randperm(train.num_samples, generator=_seeded(9, 2))
    expected = train._data["C2"].index_select(0, perm).long()
    got = torch.cat([b["C2"] for b in _epoch(train, 2)])
    assert torch.equal(got, expected)


def test_data_on_device_gives_the_host_batches(load):
    host, _ = _loaders(load, "batch_size=128", "seed=4")
    dev, _ = _loaders(load, "batch_size=128", "seed=4", "data_on_device=true")
    assert dev["train"].on_device and not host["train"].on_device
    for a, b in zip(_epoch(host["train"], 1), _epoch(dev["train"], 1)):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_multi_block_split_loads_into_one_tensor(load, data_root):
    single, _ = _loaders(load, "batch_size=100", "seed=3")
    blocked, _ = _loaders(
        load, "batch_size=100", "seed=3", "data_block_size=300", f"build_root={data_root}/b3"
    )
    assert blocked["train"].num_blocks > 1
    for k, v in single["train"]._data.items():
        assert torch.equal(v, blocked["train"]._data[k]), k
