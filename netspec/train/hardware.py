"""What the machine offers training, read without importing a framework."""

from __future__ import annotations

from pathlib import Path

# CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic: AVX512-BF16 and AMX
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes in bfloat16 natively; emulated, bf16 would be slower than fp32."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: no claim
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(NATIVE_BF16_FLAGS & set(line.split(":", 1)[-1].split()))
    return False


def cpu_label(threads: int) -> str:
    """The CPU as both backends' bench headers name it: model, and the threads its math runs on."""
    return f"{cpu_model()} ({threads} thread{'s' if threads != 1 else ''})"


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux), as 'CPU: NAME', or 'CPU'."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "CPU"
    for line in text.splitlines():
        if line.startswith("model name"):
            return "CPU: " + " ".join(line.split(":", 1)[1].split())
    return "CPU"
