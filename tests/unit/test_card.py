"""rf.fast.card: the card's identity and the clock it held while the bench timed a stream."""

import itertools
import time

import torch

from rf.fast.card import POWER_CAP, ClockMonitor, identity


def test_the_monitor_samples_beside_the_work_and_summarises_clock_power_and_the_power_cap():
    """Readings cycle through three states; the summary is their mean clock, the lowest clock, the mean power, the
    hottest temperature, and the share of readings with the power-cap bit (not any other clocks-event bit)."""
    states = itertools.cycle([
        {"sm_mhz": 1600, "power_w": 690.0, "temperature_c": 60, "reasons": POWER_CAP},
        {"sm_mhz": 1700, "power_w": 680.0, "temperature_c": 62, "reasons": POWER_CAP | 0x1},
        {"sm_mhz": 1980, "power_w": 90.0, "temperature_c": 40, "reasons": 0x1},  # idle: not the power cap
    ])  # fmt: skip
    monitor = ClockMonitor(torch.device("cpu"), every_s=0.001, read=lambda: next(states))
    with monitor:
        while len(monitor.samples) < 30:
            time.sleep(0.001)
    assert not monitor._thread.is_alive()  # stopped with the block
    n = len(monitor.samples)
    summary = monitor.summary()
    seen = monitor.samples
    assert summary["samples"] == n >= 30
    assert summary["sm_mhz_mean"] == round(sum(s["sm_mhz"] for s in seen) / n, 1)
    assert summary["sm_mhz_min"] == 1600 and summary["temperature_c_max"] == 62
    assert summary["power_capped_fraction"] == round(sum(s["sm_mhz"] != 1980 for s in seen) / n, 3)
    assert 0.6 < summary["power_capped_fraction"] < 0.7  # two of every three


def test_without_a_gpu_the_monitor_and_the_identity_say_why_and_report_no_numbers():
    monitor = ClockMonitor(torch.device("cpu"))
    with monitor:
        pass
    assert monitor.summary() == {"samples": 0, "unavailable": "RuntimeError: not a CUDA device"}
    assert identity(torch.device("cpu")) == {"name": "cpu", "unavailable": "not a CUDA device"}
