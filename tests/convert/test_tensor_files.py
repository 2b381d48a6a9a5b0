"""safetensors and pytorch_model.bin reading without torch (torch writes the references)."""

import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from keras_bert_kit.convert.tensor_files import (
    CheckpointFormatError,
    read_model_weights,
    read_pytorch_bin,
    read_safetensors,
    write_safetensors,
)


def _torch_state(seed=0):
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(6, 4, generator=generator)
    return {
        "dense.weight": torch.randn(3, 5, generator=generator),
        "transposed": base.t(),  # a non-contiguous view
        "sliced": base[2:, 1:3],  # an offset into a shared storage
        "half": torch.randn(7, generator=generator).half(),
        "bf16": torch.randn(2, 3, generator=generator).bfloat16(),
        "bf16_scalar": torch.tensor(1.5).bfloat16(),
        "ids": torch.arange(5, dtype=torch.int64)[None],
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }


def _expected(state):
    return {
        k: v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy() for k, v in state.items()
    }


def _assert_same(got, want):
    assert sorted(got) == sorted(want)
    for name in want:
        assert type(got[name]) is np.ndarray, name
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("protocol", [2, 4])
def test_pytorch_bin_matches_torch_load(tmp_path, protocol):
    state = _torch_state()
    state["tied"] = state["dense.weight"]  # one tensor under two names (the memo)
    state["row"] = state["transposed"].t()[3]  # another view of a shared storage
    # A size-1 dimension may have stride 0 (as `expand` leaves position_ids buffers).
    state["broadcast_row"] = torch.arange(4.0).as_strided((1, 4), (0, 1))
    torch.save(state, tmp_path / "w.bin", pickle_protocol=protocol)
    _assert_same(read_pytorch_bin(tmp_path / "w.bin"), _expected(state))


def test_module_state_dict_with_its_metadata(tmp_path):
    """`state_dict()` is an OrderedDict whose `_metadata` torch pickles through BUILD."""
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    torch.save(module.state_dict(), tmp_path / "w.bin")
    got = read_pytorch_bin(tmp_path / "w.bin")
    assert type(got) is dict
    _assert_same(got, {k: v.detach().numpy() for k, v in module.state_dict().items()})


def test_safetensors_written_by_the_reference_library(tmp_path):
    state = {k: v.contiguous() for k, v in _torch_state(1).items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    _assert_same(read_safetensors(tmp_path / "w.safetensors"), _expected(state))


def test_safetensors_round_trip_and_the_reference_reads_ours(tmp_path):
    from safetensors.numpy import load_file

    tensors = {"a": np.arange(12, dtype="float32").reshape(3, 4), "b": np.array([1, 2], "int64")}
    write_safetensors(tensors, tmp_path / "w.safetensors", metadata={"format": "pt"})
    _assert_same(read_safetensors(tmp_path / "w.safetensors"), tensors)
    _assert_same(load_file(str(tmp_path / "w.safetensors")), tensors)
    assert not os.path.exists(tmp_path / "w.safetensors.partial")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/kbk_pwned",))


def test_pickled_code_is_refused_not_run(tmp_path):
    path = tmp_path / "evil.bin"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x": _Exploit()}))
    if os.path.exists("/tmp/kbk_pwned"):
        os.remove("/tmp/kbk_pwned")
    with pytest.raises(CheckpointFormatError, match="refusing to unpickle (posix|os).system"):
        read_pytorch_bin(path)
    assert not os.path.exists("/tmp/kbk_pwned")


def test_legacy_and_corrupt_files_get_clear_errors(tmp_path):
    legacy = tmp_path / "legacy.bin"
    legacy.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(CheckpointFormatError, match="not a zip-format torch file"):
        read_pytorch_bin(legacy)

    truncated = tmp_path / "t.safetensors"
    write_safetensors({"a": np.ones((100,), "float32")}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:-10])
    with pytest.raises(CheckpointFormatError, match="'a'.*invalid byte range"):
        read_safetensors(truncated)

    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(struct.pack("<Q", 4) + b"{{{{")
    with pytest.raises(CheckpointFormatError, match="unreadable safetensors header"):
        read_safetensors(garbage)


def test_sharded_checkpoints(tmp_path):
    shards = {"model-00001-of-00002.safetensors": {"a": np.ones(3, "float32")},
              "model-00002-of-00002.safetensors": {"b": np.zeros((2, 2), "float32")}}
    weight_map = {}
    for name, tensors in shards.items():
        write_safetensors(tensors, tmp_path / name)
        weight_map.update(dict.fromkeys(tensors, name))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    tensors, source = read_model_weights(tmp_path)
    assert sorted(tensors) == ["a", "b"] and source.endswith(".index.json")

    os.remove(tmp_path / "model-00002-of-00002.safetensors")
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        read_model_weights(tmp_path)


def test_safetensors_preferred_over_bin(tmp_path):
    write_safetensors({"from": np.ones(1, "float32")}, tmp_path / "model.safetensors")
    buffer = io.BytesIO()
    torch.save({"from": torch.zeros(1)}, buffer)
    (tmp_path / "pytorch_model.bin").write_bytes(buffer.getvalue())
    tensors, source = read_model_weights(tmp_path)
    assert source.endswith("model.safetensors") and tensors["from"][0] == 1
