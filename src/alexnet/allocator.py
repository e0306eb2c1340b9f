"""Process settings for the `alexnet` command that must precede torch's import.

OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE unless set): with the default spinning,
a thread whose partner was descheduled on a busy machine burns whole time slices at every
barrier; measured here under load, a 256 matmul took 37 ms with 2 spinning threads, 0.45 ms with
passive ones (1 thread: 0.4 ms).

The command also runs under tcmalloc (installed by scripts/setup.sh).

AlexNet's activations are large (conv1's output alone is 148 MB at batch 128); glibc's malloc
hands such blocks back to the kernel on free, so every step page-faults its activations in again.
tcmalloc keeps them, which made training steps 20-90% faster here (issue 5; `alexnet bench`
reports which allocator ran). The library can only be preloaded at process start, so the command
re-executes itself once with LD_PRELOAD set. ALEXNET_NO_TCMALLOC=1 switches this off.
"""

from __future__ import annotations

import os
import sys

NO_TCMALLOC = "ALEXNET_NO_TCMALLOC"
_REEXECUTED = "ALEXNET_TCMALLOC_REEXEC"  # set in the re-executed process: never loop
_LIB_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
_LIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)


def find_tcmalloc() -> str | None:
    """Path of an installed tcmalloc shared library, or None."""
    for folder in _LIB_DIRS:
        for name in _LIB_NAMES:
            path = os.path.join(folder, name)  # os.path, not pathlib: `alexnet --help` imports
            if os.path.isfile(path):  # this module, and pathlib would double its start-up
                return path
    return None


def loaded_allocator() -> str:
    """ "tcmalloc" when this process runs with tcmalloc mapped in, else "default"."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as handle:
            maps = handle.read()
    except OSError:
        return "default"
    return "tcmalloc" if "libtcmalloc" in maps else "default"


def prepare_process() -> None:
    """Set the OpenMP wait policy, then re-execute under tcmalloc where that applies."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    reexec_with_tcmalloc()


def reexec_with_tcmalloc() -> None:
    """Replace this process by the same command with tcmalloc preloaded, where that applies.

    Does nothing when ALEXNET_NO_TCMALLOC is set, tcmalloc is loaded or not installed, the
    platform is not Linux, or this process is already the re-executed one.
    """
    if (
        os.environ.get(NO_TCMALLOC)
        or os.environ.get(_REEXECUTED)
        or not sys.platform.startswith("linux")
        or loaded_allocator() == "tcmalloc"
    ):
        return
    lib = find_tcmalloc()
    if lib is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
    env[_REEXECUTED] = "1"
    argv = [sys.executable, *sys.orig_argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
