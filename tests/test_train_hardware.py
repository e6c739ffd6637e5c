"""What the machine offers training, as read from /proc/cpuinfo."""

from __future__ import annotations

import pytest

from netspec.train.hardware import cpu_has_native_bf16


@pytest.mark.parametrize(("flags", "native"), [
    ("fpu avx2 avx512f avx512bw", False),  # AVX-512 alone emulates bfloat16: slower than fp32
    ("fpu avx2 avx512f avx512_bf16 avx512_vnni", True),
    ("fpu avx2 amx_bf16 amx_tile", True),
])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: A CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert cpu_has_native_bf16(cpuinfo) is native


def test_a_machine_without_cpuinfo_claims_no_bf16(tmp_path):
    assert cpu_has_native_bf16(tmp_path / "missing") is False


def test_the_cpu_model_is_named_from_cpuinfo(tmp_path):
    from netspec.train.hardware import cpu_model

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD   EPYC 9B14\nflags\t\t: fpu\n")
    assert cpu_model(cpuinfo) == "CPU: AMD EPYC 9B14"
    assert cpu_model(tmp_path / "missing") == "CPU"
