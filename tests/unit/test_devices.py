"""Devices and dtypes a run asks for are checked before any work (rf.utils.instantiate, rf.train).

The CPU cases run for real in tests/integration/test_bad_inputs.py; the GPU cases (an index past the last GPU,
bf16 or FP8 on a GPU too old for them, more trainer devices than GPUs) are staged here by making torch.cuda
report a machine with one pre-Ampere GPU (compute capability 7.0, a V100), since CI has no GPU at all.
"""

import pytest
import torch

from rf.train import check_devices
from rf.utils.instantiate import check_dtype, pick_device


@pytest.fixture
def v100(monkeypatch):
    """torch.cuda as on a machine with one V100: no bf16, no FP8 matmuls."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-16GB")


def test_cpu_and_auto_pass_and_every_dtype_runs_on_the_cpu():
    cpu = pick_device("cpu")
    assert cpu == torch.device("cpu")
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        check_dtype(cpu, dtype, fp8=True)  # the CPU computes all of them (bf16 emulated); fp8: the reference path
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA GPU")
def test_a_gpu_on_a_machine_without_one_is_refused():
    with pytest.raises(ValueError, match=r"device=cuda:0: this machine has no CUDA GPU .*use device=cpu or auto"):
        pick_device("cuda:0")


def test_a_name_that_is_no_device_is_refused():
    with pytest.raises(ValueError, match=r"device=gpu0 is not a device: use auto, cpu, cuda or cuda:N"):
        pick_device("gpu0")


def test_a_gpu_index_past_the_last_is_refused(v100):
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"device=cuda:1: this machine has 1 CUDA GPU \(cuda:0 to cuda:0\)"):
        pick_device("cuda:1")


def test_bf16_and_fp8_on_a_gpu_that_cannot_compute_them_are_refused(v100):
    gpu = torch.device("cuda:0")
    check_dtype(gpu, torch.float16)
    check_dtype(gpu, torch.float32)
    with pytest.raises(ValueError, match=r"dtype=bfloat16: Tesla V100-SXM2-16GB cannot compute in bf16"):
        check_dtype(gpu, torch.bfloat16)
    with pytest.raises(ValueError, match=r"fast.fp8=true: Tesla V100-SXM2-16GB \(compute capability 7.0\) has no FP8"):
        check_dtype(gpu, torch.float16, fp8=True)


def test_trainer_devices_and_precision_are_checked_against_the_gpus(v100):
    check_devices({"accelerator": "gpu", "devices": 1, "precision": "16-mixed"})
    check_devices({"accelerator": "cpu", "devices": 4})  # CPU processes: as many as torchrun starts
    with pytest.raises(ValueError, match=r"trainer.devices=4: this machine has 1 CUDA GPU: use trainer.devices=1"):
        check_devices({"accelerator": "gpu", "devices": 4})
    with pytest.raises(ValueError, match=r"trainer.devices=\[0, 2\]: this machine has 1 CUDA GPU"):
        check_devices({"accelerator": "gpu", "devices": [0, 2]})
    with pytest.raises(ValueError, match=r"trainer.precision=bf16-mixed: Tesla V100-SXM2-16GB cannot compute in bf16"):
        check_devices({"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"})
