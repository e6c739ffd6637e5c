"""netspec.train.safetensors_stream: files the safetensors library reads back exactly."""

from __future__ import annotations

import io

import pytest

from netspec.train.safetensors_stream import write_safetensors

np = pytest.importorskip("numpy")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

ARRAYS = {
    "conv.weight": np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3) / 7,
    "bn.num_batches_tracked": np.asarray(np.int64(12345)),  # a 0-d array
    "mask": np.array([True, False, True]),
    "half": np.linspace(-1, 1, 5, dtype=np.float16),
    "empty": np.zeros((0, 4), dtype=np.float64),
    "seed": np.array([2**32 - 1, 7], dtype=np.uint32),
    "odd": np.arange(3, dtype=np.int8),  # 3 bytes: the next tensor starts unaligned, as the format allows
    "after_odd": np.arange(4, dtype=np.int16),
}


def _written(arrays, metadata=None) -> bytes:
    buffer = io.BytesIO()
    write_safetensors(buffer, arrays, metadata)
    return buffer.getvalue()


def test_the_library_reads_back_every_array_and_the_metadata(tmp_path):
    from safetensors import safe_open

    data = _written(ARRAYS, {"spec": "alexnet", "loop": '{"epoch": 3}'})
    back = safetensors_numpy.load(data)
    assert set(back) == set(ARRAYS)
    for name, array in ARRAYS.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape
        assert np.array_equal(back[name], array), name
    assert int.from_bytes(data[:8], "little") % 8 == 0  # the tensors start 8-byte aligned
    path = tmp_path / "state.safetensors"
    path.write_bytes(data)
    with safe_open(path, framework="numpy") as handle:
        assert handle.metadata() == {"spec": "alexnet", "loop": '{"epoch": 3}'}


def test_no_metadata_and_no_arrays_still_make_a_valid_file():
    assert safetensors_numpy.load(_written({})) == {}
    assert set(safetensors_numpy.load(_written({"a": np.ones(2, np.float32)}))) == {"a"}


def test_a_non_contiguous_array_or_an_unknown_dtype_is_refused_before_anything_is_written():
    buffer = io.BytesIO()
    with pytest.raises(ValueError, match="t: the array must be C-contiguous and little-endian"):
        write_safetensors(buffer, {"fine": np.ones(3, np.float32), "t": np.ones((3, 4), np.float32).T})
    with pytest.raises(ValueError, match="big: the array must be C-contiguous and little-endian"):
        write_safetensors(buffer, {"big": np.ones(3, dtype=">f4")})
    with pytest.raises(TypeError, match="c: safetensors holds no complex64 arrays"):
        write_safetensors(buffer, {"c": np.ones(2, np.complex64)})
    assert buffer.getvalue() == b""


def test_the_arrays_are_written_without_a_copy_of_the_whole_file(tmp_path):
    """Each write hands the array's own memory to the handle: nothing as large as the file is built."""
    big = {f"w{i}": np.full((256, 1024), i, dtype=np.float32) for i in range(4)}  # 4 MiB in all
    sizes = []

    class Recording(io.BytesIO):
        def write(self, data):
            sizes.append(memoryview(data).nbytes)
            return super().write(data)

    handle = Recording()
    write_safetensors(handle, big)
    assert max(sizes) == 256 * 1024 * 4  # one array at a time
    assert safetensors_numpy.load(handle.getvalue())["w3"][0, 0] == 3
