"""Which card a bench ran on, and what clock it held while it was timed (rf.bench writes both into its JSON).

At its power cap a card's sustained clock is its own: four H200s of one host held 1,605-1,659 MHz at 686-691 W through
the same 60-s stream, and their streams ran 39.9-41.1 FPS in the order of their clocks (experiments/bench/README.md,
the fourteenth session). Two bench files from two cards differ by that much before any switch does, so each timed
stream records its card's SM clock, power and temperature, sampled beside it on a thread, and whether the card was
holding its clock down for power.

    identity(device)            -> {"name", "uuid", "multiprocessors", "memory_gib", "power_limit_w", "max_sm_mhz"}
    with ClockMonitor(device) as card:
        ...timed work...
    card.summary()              -> {"samples", "sm_mhz_mean", "sm_mhz_min", "power_w_mean", "temperature_c_max",
                                    "power_capped_fraction"}

Readings come from NVML (nvidia-ml-py; PyTorch's torch.cuda.clock_rate and power_draw read the same). Without a
CUDA device or NVML, identity() says so and the monitor records why, in its summary's "unavailable", and no numbers.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable

import torch

POWER_CAP = 0x4  # NVML's clocks-event reason "software power cap": the driver lowered the clock to hold the power limit


def _nvml_handle(device: torch.device):
    """NVML's handle of a torch CUDA device, found by its UUID (NVML does not see CUDA_VISIBLE_DEVICES)."""
    import pynvml

    pynvml.nvmlInit()
    return pynvml, pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{torch.cuda.get_device_properties(device).uuid}")


def identity(device: torch.device) -> dict:
    """The card: its name and UUID (which card of a host), its multiprocessors and memory, its power limit and top
    SM clock where NVML answers."""
    if device.type != "cuda":
        return {"name": "cpu", "unavailable": "not a CUDA device"}
    props = torch.cuda.get_device_properties(device)
    out = {"name": props.name, "uuid": str(props.uuid), "multiprocessors": props.multi_processor_count,
           "memory_gib": round(props.total_memory / 2**30, 1)}  # fmt: skip
    try:
        nvml, handle = _nvml_handle(device)
        out["power_limit_w"] = nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000
        out["max_sm_mhz"] = nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM)
    except Exception as e:  # NVML missing or refusing (a container without it): the rest stands
        out["unavailable"] = f"NVML: {type(e).__name__}: {e}"
    return out


def nvml_reader(device: torch.device) -> Callable[[], dict]:
    """A function returning one reading of the card: SM clock (MHz), power (W), temperature (C), clocks-event bits."""
    nvml, handle = _nvml_handle(device)
    reasons = (
        getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
    )

    def read() -> dict:
        return {"sm_mhz": nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
                "power_w": nvml.nvmlDeviceGetPowerUsage(handle) / 1000,
                "temperature_c": nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
                "reasons": reasons(handle)}  # fmt: skip

    return read


class ClockMonitor:
    """Samples the card every `every_s` seconds on a thread while the `with` block runs (see the module doc).
    `read` replaces NVML (tests); a device without NVML gives a summary that says why."""

    def __init__(self, device: torch.device, every_s: float = 0.25, read: Callable[[], dict] | None = None):
        self.every_s, self.samples, self.unavailable = every_s, [], None
        self._stop = threading.Event()
        self._read = read
        if read is None:
            try:
                if device.type != "cuda":
                    raise RuntimeError("not a CUDA device")
                self._read = nvml_reader(device)
            except Exception as e:
                self.unavailable = f"{type(e).__name__}: {e}"

    def _run(self) -> None:
        while True:
            self.samples.append(self._read())
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> ClockMonitor:
        if self._read is not None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="rf-clock-monitor")
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._read is not None:
            self._stop.set()
            self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {"samples": 0, "unavailable": self.unavailable or "no sample taken"}
        sm = [s["sm_mhz"] for s in self.samples]
        return {
            "samples": len(self.samples),
            "every_s": self.every_s,
            "sm_mhz_mean": round(statistics.mean(sm), 1),
            "sm_mhz_min": min(sm),
            "power_w_mean": round(statistics.mean(s["power_w"] for s in self.samples), 1),
            "temperature_c_max": max(s["temperature_c"] for s in self.samples),
            "power_capped_fraction": round(sum(bool(s["reasons"] & POWER_CAP) for s in self.samples) / len(sm), 3),
        }
