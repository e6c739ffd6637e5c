"""Keep freed memory in the process during CPU training (Linux, glibc).

glibc's malloc serves large blocks with mmap and hands them back to the kernel when freed, and
trims the heap whenever its free top grows past a threshold. A CPU training step frees and
re-allocates hundreds of megabytes (gradients, optimizer temporaries, activations), so every step
paid page faults for all of it: on alexnet-digits half of the step's time was spent in the kernel
(13 s of system time in a 30 s benchmark), and throughput fell as the run went on. Raising both
thresholds keeps that memory for reuse: 42 → 70 images/s and 1.8 s of system time in the same
benchmark (benchmarks/results/cpu_malloc.json). The process's resident memory then stays at its peak,
which a training process reaches anyway.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
KEEP_UP_TO = 1 << 30  # blocks up to 1 GiB come from, and return to, the process's own heap


def keep_freed_memory() -> bool:
    """Apply the two glibc settings; False where they do not apply (another OS or C library)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return mallopt(M_MMAP_THRESHOLD, KEEP_UP_TO) == 1 and mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO) == 1
