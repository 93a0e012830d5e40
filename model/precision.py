"""Which reduced precision a device computes natively, shared by training and serving, and the
signal stack a thread needs once it runs AMX kernels.

bf16 halves the bytes every convolution moves and, on hardware made for it, doubles the matmul
rate; where it is emulated it is far slower than fp32. So reduced precision is chosen per device
and only where it is native.
"""

import ctypes

import torch


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX. Without them oneDNN emulates bf16, about a hundred times slower
    than fp32."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def mixed_precision(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `device`: bf16 on GPUs that have it, else fp16 (which needs loss
    scaling in training); bf16 on CPUs that compute it natively; None (fp32) otherwise."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None


# --- AMX and signals ------------------------------------------------------------------------------
# CPython's faulthandler (on under pytest and torchrun) and OpenVINO's CPU plugin give a thread an
# alternate signal stack sized from the kernel's AT_MINSIGSTKSZ, which leaves out AMX tile state.
# Python installs its signal handlers with SA_ONSTACK, so once oneDNN has run AMX bf16 kernels on
# that thread, the next signal handled there (a child's SIGCHLD, a SIGTERM) no longer fits and the
# kernel kills the process with SIGSEGV. Seen on a 2-core AMX Xeon in one of two to four runs of
# the backend tests followed by DataLoader workers exiting; never with the roomy stack below.

SIGNAL_STACK = 1 << 18  # 256 KiB: an AMX signal frame (about 12 KiB) with ample room to run in
_SS_DISABLE = 2


class _Stack(ctypes.Structure):
    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_kept: list[ctypes.Array] = []  # a stack in use must outlive every handler that may run on it


def signal_stack_size() -> int | None:
    """The calling thread's alternate signal stack size; None when it has none."""
    current = _Stack()
    if _libc.sigaltstack(None, ctypes.byref(current)) != 0 or current.ss_flags & _SS_DISABLE:
        return None
    return current.ss_size


def roomy_signal_stack() -> None:
    """Give the calling thread a large alternate signal stack if it has a smaller one (without
    one, handlers run on the thread's own stack, which is ample). Call it on a thread that runs
    AMX kernels, after whatever set its stack up."""
    size = signal_stack_size()
    if size is None or size >= SIGNAL_STACK:
        return
    memory = ctypes.create_string_buffer(SIGNAL_STACK)
    stack = _Stack(ctypes.addressof(memory), 0, SIGNAL_STACK)
    if _libc.sigaltstack(ctypes.byref(stack), None) == 0:
        _kept.append(memory)
