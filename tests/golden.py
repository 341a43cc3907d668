"""Where golden numbers may be compared exactly.

Golden hashes of a tiny run's weights and losses guard against a code change that alters the
numbers. Float rounding differs between torch versions and CPU kernels (AVX2 / AVX512, vendors),
so they are compared only on the platform they were recorded on; elsewhere the test is skipped,
naming both platforms (the kill -9 tests still compare runs on the machine at hand).
"""
from __future__ import annotations

import pytest
import torch

#: (torch version, CPU kernel level, CPU model) of the machine the golden numbers were recorded on
RECORDED = ("2.13.0+cpu", "AVX512", "AMD EPYC")


def platform() -> tuple[str, str, str]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    return torch.__version__, torch.backends.cpu.get_cpu_capability(), model


def require_recorded_platform(recorded: tuple[str, str, str] = RECORDED) -> None:
    """Skip the calling test unless this machine is the one the golden numbers come from."""
    here = platform()
    if here != recorded:
        pytest.skip(f"golden numbers recorded on {recorded}, this is {here}")
