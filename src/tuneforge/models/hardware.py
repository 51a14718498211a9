"""How fast and how big the training device is: achieved FLOP/s and the memory a run may use.

On the CPU the speed is measured (a short fp32 matrix-multiply benchmark), because CPUs differ too much for a
table; training reaches only part of that rate (small matrices, elementwise work, the optimiser): about three
quarters on the bench machine (bench/memory.py: 0.5 to 0.95 over six configurations). On CUDA the device name
selects its published dense peak, times a typical utilisation for fine-tuning.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from tuneforge.errors import TuneforgeError

CPU_TRAINING_EFFICIENCY = 0.75  # share of the matmul benchmark's rate a training step achieves (bench: 0.5-0.95)
GPU_TRAINING_EFFICIENCY = {"tensor": 0.35, "fp32": 0.5}  # fine-tuning utilisation of the dense peak
# Dense peak TFLOP/s (no sparsity): (fp32 without tensor cores, bf16/fp16 tensor cores with fp32 accumulation),
# from the vendors' data sheets. The first matching pattern wins, so specific names come first.
GPU_PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    ("h200", 67.0, 989.0),
    ("h100 pcie", 51.0, 756.0),
    ("h100", 67.0, 989.0),
    ("a100", 19.5, 312.0),
    ("l40s", 91.6, 362.0),
    ("l4", 30.3, 121.0),
    ("a10g", 31.2, 70.0),
    ("a10", 31.2, 125.0),
    ("a6000", 38.7, 154.8),
    ("rtx 4090", 82.6, 165.2),
    ("rtx 3090", 35.6, 71.0),
    ("t4", 8.1, 65.0),
    ("v100", 15.7, 125.0),
)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
          "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


@dataclass(frozen=True)
class Throughput:
    flops: float  # achieved training FLOP/s
    source: str  # how it was obtained, for the report


def measure_matmul_flops(tokens: int = 2048, width: int = 768, seconds: float = 0.25) -> float:
    """fp32 FLOP/s on the CPU, with torch's current thread count, of the product a BERT-base feed-forward layer
    computes: (tokens × width) @ (width × 4·width)."""
    import torch

    a, b = torch.randn(tokens, width), torch.randn(width, 4 * width)
    for _ in range(2):
        a @ b  # warm-up: first calls pay for thread-pool start and page faults
    count, start = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * tokens * width * 4 * width * count / (time.perf_counter() - start)


def cpu_throughput() -> Throughput:
    import torch

    measured = measure_matmul_flops()
    return Throughput(measured * CPU_TRAINING_EFFICIENCY,
                      f"CPU matmul benchmark {measured / 1e9:.0f} GFLOP/s on {torch.get_num_threads()} threads "
                      f"x {CPU_TRAINING_EFFICIENCY} training efficiency")


def gpu_peak(name: str) -> tuple[float, float] | None:
    """(fp32, bf16/fp16) dense peak TFLOP/s of a GPU by (part of) its name; None when unknown."""
    lowered = name.lower()
    for pattern, fp32, tensor in GPU_PEAK_TFLOPS:
        if pattern in lowered:
            return fp32, tensor
    return None


def gpu_throughput(name: str, precision: str) -> Throughput | None:
    peak = gpu_peak(name)
    if peak is None:
        return None
    kind = "fp32" if precision == "fp32" else "tensor"
    tflops = peak[0] if kind == "fp32" else peak[1]
    efficiency = GPU_TRAINING_EFFICIENCY[kind]
    return Throughput(tflops * 1e12 * efficiency,
                      f"{name}: {tflops:g} TFLOP/s dense {precision} peak x {efficiency} utilisation")


def visible_gpu() -> tuple[str, int] | None:
    """(name, total bytes) of the first CUDA device, None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    properties = torch.cuda.get_device_properties(0)
    return properties.name, int(properties.total_memory)


def device_throughput(device: str, precision: str, gpu_name: str | None = None,
                      tflops: float | None = None) -> Throughput | None:
    """Achieved FLOP/s for a device: given, measured (CPU), or from the GPU table; None when unknown."""
    if tflops:
        return Throughput(tflops * 1e12, f"given: {tflops:g} TFLOP/s")
    if device == "cpu":
        return cpu_throughput()
    name = gpu_name or (visible_gpu() or ("", 0))[0]
    return gpu_throughput(name, precision) if name else None


def parse_size(text: str) -> int:
    """'16GB', '16 GiB', '512MB', '8g' -> bytes (G without B means GiB, as `free -g` does)."""
    match = _SIZE.match(text)
    unit = (match.group(2) or "").lower() if match else ""
    if not match or unit not in _UNITS:
        raise TuneforgeError(f"cannot read the memory size '{text}'", fix="write it like 16GB, 16GiB or 512MB")
    return int(float(match.group(1)) * _UNITS[unit])


def memory_budget(device: str) -> tuple[int, str]:
    """(bytes, description) a run may use: available RAM on the CPU, the GPU's total memory on CUDA."""
    if device == "cuda":
        gpu = visible_gpu()
        if gpu is None:
            raise TuneforgeError("no CUDA GPU is visible on this machine",
                                 fix="pass the GPU's memory with --memory (e.g. --memory 24GB), or use --device cpu")
        return gpu[1], f"{gpu[0]}, {gpu[1] / 2**30:.0f} GiB"
    import psutil

    available = int(psutil.virtual_memory().available)
    return available, f"available RAM, {available / 2**30:.1f} GiB"
