"""Which device and numeric precision a command runs on, and the autocast context for it.

Training, generation and evaluation all pick their device here, so none of them imports the
trainer just to find a GPU.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from melodylm.errors import UserError


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA, then MPS, then CPU) or an explicit ``cpu | cuda | cuda:N | mps``; UserError if absent."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible to torch (use --device cpu)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps: MPS is not available here (use --device cpu)")
    return dev


def pick_precision(name: str, device: torch.device) -> str:
    """``auto`` -> bf16 (or fp16 without bf16 support) on CUDA, fp32 elsewhere; fp16 on CPU is a UserError."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"  # CPU autocast is slower than fp32 for these model sizes
    if name == "fp16" and device.type == "cpu":
        raise UserError("--precision fp16 needs a GPU; use fp32 or bf16 on the CPU")
    return name


def autocast_ctx(device: torch.device, precision: str):
    """A context manager running the forward pass in ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
