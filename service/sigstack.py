"""A roomy alternate signal stack for the thread that set up OpenVINO.

OpenVINO's CPU plugin gives the thread that creates it an alternate signal stack sized from the
kernel's AT_MINSIGSTKSZ, which leaves out AMX tile state. Python installs its signal handlers with
SA_ONSTACK, so once AMX kernels (OpenVINO's or PyTorch's oneDNN bf16) have run on that thread, the
next signal it handles there (a child's SIGCHLD, a SIGTERM) no longer fits, and the kernel kills
the whole process with SIGSEGV. Seen on a 2-core AMX Xeon: the test process died that way in one
of two to four runs of the backend tests followed by DataLoader workers exiting.
"""

import ctypes

SIZE = 1 << 18  # 256 KiB: an AMX signal frame (about 12 KiB) with ample room for its handler


class _Stack(ctypes.Structure):
    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


_kept: list[ctypes.Array] = []  # the stacks in use must outlive their threads' signal handlers


def roomy_signal_stack() -> None:
    """Give the calling thread a large alternate signal stack if it has a smaller one."""
    libc = ctypes.CDLL(None, use_errno=True)
    current = _Stack()
    if libc.sigaltstack(None, ctypes.byref(current)) != 0 or current.ss_flags & 2:  # SS_DISABLE
        return  # no alternate stack: handlers run on the thread's own, ample, stack
    if current.ss_size >= SIZE:
        return
    memory = ctypes.create_string_buffer(SIZE)
    if libc.sigaltstack(ctypes.byref(_Stack(ctypes.addressof(memory), 0, SIZE)), None) == 0:
        _kept.append(memory)
