"""CPU speed settings of the training loop: the allocator and what the CPU can do in bf16.

* :func:`reuse_freed_memory` — glibc's ``malloc`` serves every block ≥ its mmap threshold (at
  most 32 MiB) with a fresh ``mmap`` and gives it back with ``munmap`` on ``free``, so a
  training step that allocates the same large activations every step (the logits alone are
  B·T·V·4 bytes: 32 MiB at 8×256×4,096) page-faults them in again each time, and the kernel
  zeroes every page first. Measured on the ``tiny`` preset (AMD EPYC, 2 threads): ~41,000 minor
  faults and ~80 ms of system time per step, none with this setting once the heap has grown
  (the first few steps: posix_memalign's aligned blocks fit freed ones only after neighbours
  coalesce), same losses bit for bit (bench/README.md, "webmill vs nanoGPT"). The setting (``mallopt(M_MMAP_MAX, 0)``: no mmap'd
  blocks; ``mallopt(M_TRIM_THRESHOLD, 1 GiB)``: keep freed heap memory) is the one the PyTorch CPU
  performance guides reach with jemalloc/tcmalloc (``LD_PRELOAD``), without a preload. glibc:
  ``man 3 mallopt``. Other C libraries (macOS, musl): a no-op.
* :func:`bf16_capable` — whether the CPU has native bf16 matrix instructions (AVX-512-BF16 or
  AMX-BF16); without them bf16 autocast is emulated and slower (7× slower measured on an
  AVX2-only EPYC), so ``--dtype auto`` stays fp32 on CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Iterator
from pathlib import Path

# mallopt parameter numbers and glibc's defaults (malloc/malloc.h; man 3 mallopt)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_BYTES = 1 << 30  # freed heap memory kept for reuse (the peak of a step stays mapped)


def _glibc():
    """glibc as a ctypes library, or ``None`` when the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
        return libc
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def reuse_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """While inside, large blocks come from the heap and freed memory stays there for reuse.

    Yields ``True`` when the setting is active (glibc and ``enabled``), else ``False``. On exit
    glibc's default mmap count and trim threshold are restored (the dynamic threshold adjustment
    stays off for the rest of the process, as after any ``mallopt`` call) and ``malloc_trim(0)``
    returns the free heap pages to the system. Process-wide: every thread's allocations are
    affected while inside. Never raises.
    """
    libc = _glibc() if enabled else None
    active = bool(libc and libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1)
    try:
        yield active
    finally:
        if libc is not None:
            libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
            libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
            if active:
                libc.malloc_trim(0)  # give the kept free memory back to the system


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The feature flags of the first CPU in ``/proc/cpuinfo`` (or of the given text); empty set
    when it cannot be read (not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_capable(flags: set[str] | None = None) -> bool:
    """True when the CPU multiplies bf16 natively: flag ``avx512_bf16`` (Cooper Lake, Zen 4 and
    later) or ``amx_bf16`` (Sapphire Rapids and later), per the Linux ``/proc/cpuinfo`` names."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_bf16", "amx_bf16"})
