"""Write a safetensors file to an open handle, array by array, without building it in memory.

``safetensors``' own ``save`` returns the whole file as one bytes object: for a checkpoint of
alexnet-digits' Adam state that is 456 MB allocated, filled and freed every epoch, and on the
Keras main command its serialization took 6 to 12 s of the run's 78 s (benchmarks/profile_training.py
--backend keras). The format is a little-endian u64 header length, a JSON header (each tensor's
dtype, shape and byte range; a ``__metadata__`` map of strings), padded with spaces to a multiple
of 8 bytes, then the tensors' bytes back to back. Files written here are read back with the
safetensors library itself, which checks all of that (tested).

Arrays are NumPy arrays (either backend hands its tensors over as such), C-contiguous and in the
machine's byte order, which must be little-endian. Neither NumPy nor a framework is imported here.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Mapping
from typing import Any, BinaryIO

# NumPy dtype name -> safetensors dtype
DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64",
          "int32": "I32", "int16": "I16", "int8": "I8", "uint64": "U64", "uint32": "U32", "uint16": "U16",
          "uint8": "U8", "bool": "BOOL"}


def write_safetensors(handle: BinaryIO, arrays: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
    """Write ``arrays`` (name -> array) and ``metadata`` as one safetensors file to ``handle``."""
    if sys.byteorder != "little":  # the format is little-endian; so are the arrays of every machine we run on
        raise NotImplementedError("writing safetensors needs a little-endian machine")
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    views, offset = [], 0
    for name, array in arrays.items():
        dtype = DTYPES.get(array.dtype.name)
        if dtype is None:
            raise TypeError(f"{name}: safetensors holds no {array.dtype.name} arrays")
        if not array.flags.c_contiguous or array.dtype.byteorder == ">":
            raise ValueError(f"{name}: the array must be C-contiguous and little-endian")
        view = memoryview(array.reshape(-1).view("u1"))  # its bytes, uncopied
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + view.nbytes]}
        views.append(view)
        offset += view.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the tensors start 8-byte aligned
    handle.write(struct.pack("<Q", len(encoded)))
    handle.write(encoded)
    for view in views:
        handle.write(view)
