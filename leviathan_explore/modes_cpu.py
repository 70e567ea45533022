"""The C kernel of the generator's stage 3 on a CPU (``impl="native"``): its build and its loading.

On a CPU the eager fast paths spend their time on about a hundred small tensor ops
per step (each a pass over an ``[n, M, d, r]`` tensor), not on arithmetic: at the
CPU presets stage 3 is ~1.5% of a training step's FLOPs but was ~30% of its time.
``csrc/modes.c`` does the forward and the backward each in one pass that keeps
``phi`` in registers, the same arithmetic as the Triton kernels.

Why C and not ``torch.compile``: inductor's CPU code for this gather-heavy function
(measured on 2 cores, one thread, cpu-tiny generator, ~350 distinct ids) took 10-14 ms
per forward+backward after a 10-17 s compile, against ~29 ms eager; this kernel needs
no torch headers, builds with the system C compiler in about a second (cached per
source, flags and CPU under ``~/.cache/leviathan-explore``) and is what
``benchmarks``/``bench`` measure. Where no C compiler is found, ``available()`` is
False and ``impl="auto"`` keeps the eager ``fused`` path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from importlib import resources
from pathlib import Path


# Fast math lets gcc call glibc's vector logf/expf (libmvec), 8 or 16 at a time. The object is
# linked without it: linking with -ffast-math (gcc < 13) adds crtfastmath.o, whose constructor
# would turn on flush-to-zero for the whole Python process.
COMPILE_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fPIC", "-std=c99"]
PLAIN_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fPIC", "-std=c99"]
FLAGS = COMPILE_FLAGS  # recorded in the cache key
_LOCK = threading.Lock()
_LIB: ctypes.CDLL | None = None
_ERROR: str | None = None


def _cache_dir() -> Path:
    root = os.environ.get("LEVIATHAN_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME")
                                                            or os.path.expanduser("~/.cache"), "leviathan-explore")
    return Path(root)


def _cpu_key() -> str:
    """What -march=native depends on: the CPU's model and flags (a shared home on another CPU rebuilds)."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
        lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = []
    return platform.machine() + "|" + "|".join(lines)


def _build(source: bytes) -> Path:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    key = hashlib.sha256(source + " ".join(FLAGS).encode() + _cpu_key().encode()).hexdigest()[:16]
    out = _cache_dir() / f"modes-{key}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src, obj, lib = Path(tmp) / "modes.c", Path(tmp) / "modes.o", Path(tmp) / "modes.so"
        src.write_bytes(source)
        error = ""
        for flags, libs in ((COMPILE_FLAGS, ["-lmvec", "-lm"]), (PLAIN_FLAGS, ["-lm"])):  # no libmvec: plain
            steps = ([cc, *flags, "-c", str(src), "-o", str(obj)], [cc, "-shared", str(obj), "-o", str(lib), *libs])
            for cmd in steps:
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    error = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else str(proc.returncode)
                    break
            else:
                os.replace(lib, out)  # atomic: a concurrent build of the same key writes the same bytes
                return out
        raise RuntimeError(f"{cc} failed: {error}")


def library() -> ctypes.CDLL:
    """The loaded kernel (built on the first call); RuntimeError saying why when it cannot be."""
    global _LIB, _ERROR
    with _LOCK:
        if _LIB is None and _ERROR is None:
            try:
                source = resources.files("leviathan_explore").joinpath("csrc/modes.c").read_bytes()
                lib = ctypes.CDLL(str(_build(source)))
                i64, ptr = ctypes.c_int64, ctypes.c_void_p
                lib.leviathan_modes_forward.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64, i64]
                lib.leviathan_modes_backward.argtypes = [ptr, ptr, ptr, ptr, ptr, ptr, i64, i64, i64, i64, i64,
                                                         ctypes.c_int, ctypes.c_int]
                _LIB = lib
            except (OSError, RuntimeError) as exc:
                _ERROR = str(exc)
        if _LIB is None:
            raise RuntimeError(f"the native CPU kernel is unavailable: {_ERROR}")
        return _LIB


def available() -> bool:
    """True when the kernel builds and loads here (built once per process, then cached on disk)."""
    if os.environ.get("LEVIATHAN_NATIVE", "1") == "0":
        return False
    try:
        library()
    except RuntimeError:
        return False
    return True


def unavailable_reason() -> str | None:
    return None if available() else (_ERROR or "disabled by LEVIATHAN_NATIVE=0")
