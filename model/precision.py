"""Which reduced precision a device computes natively, shared by training and serving.

bf16 halves the bytes every convolution moves and, on hardware made for it, doubles the matmul
rate; where it is emulated it is far slower than fp32. So reduced precision is chosen per device
and only where it is native.
"""

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
