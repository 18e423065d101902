"""Inference precision: the dtype an encoder's forward pass computes in (`--precision auto|fp32|bf16|fp16`).

`auto` picks the fastest precision that keeps retrieval quality, by device:

    CUDA                                          bf16 where the GPU has it, else fp16 (tensor cores)
    CPU with native bf16 (AVX512-BF16 or AMX)     bf16  (MiniLM-L6: 1.9x fp32 on a 2-core AVX512-BF16 Xeon,
                                                         SciFact nDCG@10 within 0.001; benchmarks/bench_encode.py)
    any other CPU                                 fp32  (bf16 is emulated there, and slower)

The environment variable LED_HF_CPU_BF16=0 (or 1) overrides the CPU detection, e.g. to keep `auto` at fp32
for every command of a pipeline on a bf16 CPU (the test suite does, so that it runs the same everywhere).

Half precision runs under `torch.autocast` over fp32 weights: matrix products in half precision, layer norms,
softmax and pooling in fp32 (pooling casts to fp32), so embeddings and term weights come out float32.

Training follows the same CPU rule (`training_bf16`): the trainers' `bf16` option defaults to unset, which
resolves once, when the arguments are built, to on when training runs on a CPU with native bf16 and off
elsewhere (GPU recipes set `bf16`/`fp16` themselves). On means `Trainer(bf16=True)`: Accelerate runs the
forward passes under bf16 autocast while the weights, gradients and optimizer state stay fp32. The
resolved value is what `led_args.json` records; `--bf16 false` (or `"bf16": false`) opts out.
"""

from __future__ import annotations

import contextlib
import os

from led_hf.errors import LedError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # torch stays unimported here: CLI parsers use this module
CPU_BF16_ENV = "LED_HF_CPU_BF16"


def autocast_dtype(precision: str):
    """ "bf16" -> torch.bfloat16, "fp16" -> torch.float16, "fp32" -> None (no autocast)."""
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 matrix products in hardware (AVX512-BF16 or AMX tiles), unless
    LED_HF_CPU_BF16 says otherwise ("0" or "1")."""
    override = os.environ.get(CPU_BF16_ENV, "").strip()
    if override in ("0", "1"):
        return override == "1"
    if override:
        raise LedError(f"{CPU_BF16_ENV}={override!r}: use 0 or 1")
    import torch

    checks = (
        getattr(torch.cpu, "_is_avx512_bf16_supported", None),
        getattr(torch.cpu, "_is_amx_tile_supported", None),
    )
    return any(check is not None and check() for check in checks)


def training_bf16(bf16: bool | None, fp16: bool, on_cpu: bool) -> bool:
    """The `bf16` a training run uses: an explicit True/False as given; unset (None) -> True exactly when
    training runs on a CPU with native bf16 (`cpu_has_native_bf16`) and fp16 was not asked for."""
    if bf16 is not None:
        return bool(bf16)
    return bool(on_cpu and not fp16 and cpu_has_native_bf16())


def trains_on_cpu(use_cpu: bool) -> bool:
    """Whether a Trainer with this `use_cpu` runs on the CPU (no CUDA, XPU or MPS device to take)."""
    if use_cpu:
        return True
    import torch

    accelerators = (
        torch.cuda.is_available(),
        hasattr(torch, "xpu") and torch.xpu.is_available(),
        torch.backends.mps.is_available(),
    )
    return not any(accelerators)


def resolve_precision(name: str, device) -> str:
    """`auto` -> the precision used on `device` (table above); an explicit name is returned as it is.

    E.g. ("auto", "cuda:0") -> "bf16" on an A100/H100, "fp16" on a V100; ("fp32", "cuda") -> "fp32".
    """
    if name not in PRECISIONS:
        raise LedError(f"precision {name!r} is not one of {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast(device, precision: str):
    """Context manager running a forward pass in `precision` ("fp32": a no-op) on `device`."""
    import torch

    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def with_precision(fn, device, precision: str):
    """`fn` wrapped so that every call runs under `autocast(device, precision)` (`fn` itself for fp32)."""
    if autocast_dtype(precision) is None:
        return fn

    def run(*args, **kwargs):
        with autocast(device, precision):
            return fn(*args, **kwargs)

    return run


def add_precision_argument(parser, what: str = "encoder forward passes") -> None:
    """The `--precision` flag of the commands that run an encoder (`led encode`, `led mine`)."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help=f"compute precision of the {what} (autocast over fp32 weights; outputs stay float32). "
        "auto (default): bf16 on GPUs that have it, else fp16; bf16 on CPUs with native bf16 "
        "(AVX512-BF16/AMX), else fp32",
    )
