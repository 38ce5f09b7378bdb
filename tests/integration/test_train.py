"""`python -m rf.train experiment=toy_teacher`: trains, checkpoints without frozen modules, resumes."""

import torch

from tests.cli import run_rf

TINY = [
    "experiment=toy_teacher",
    "model.transformer.num_layers=1",
    "model.transformer.ffn_dim=64",
    "data.batch_size=2",
    "checkpoint_every=2",
    "logger.tensorboard=false",
]


def test_train_then_relaunch_resumes(tmp_path):
    r = run_rf("train", *TINY, "trainer.max_steps=3", runs=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    last = tmp_path / "toy_teacher" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3
    keys = ckpt["state_dict"].keys()
    assert any(k.startswith("transformer.") for k in keys)
    assert not any(k.startswith(("text_encoder.", "autoencoder.")) for k in keys)

    r = run_rf("train", *TINY, "trainer.max_steps=5", runs=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stdout
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 5

    # the student starts from the teacher's weights
    r = run_rf("generate", f"ckpt={last}", "model.transformer.num_layers=1", "model.transformer.ffn_dim=64",
               "frames=6", f"out={tmp_path / 'x.mp4'}", runs=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(transformer)" in r.stdout


def test_checkpoint_of_another_model_size_is_refused(tmp_path):
    r = run_rf("train", *TINY, "trainer.max_steps=1", runs=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    last = tmp_path / "toy_teacher" / "checkpoints" / "last.ckpt"
    r = run_rf("generate", f"ckpt={last}", "frames=3", runs=tmp_path)  # default model: 4 layers, ffn 512
    assert r.returncode == 2
    assert "another model size" in r.stderr and "Traceback" not in r.stderr


def test_unknown_experiment_and_option(tmp_path):
    r = run_rf("train", "experiment=toy_nothing", runs=tmp_path)
    assert r.returncode != 0 and "experiment/toy_nothing" in r.stderr
    r = run_rf("train", "experiment=toy_teacher", "trainer.max_stepz=3", runs=tmp_path)
    assert r.returncode != 0 and "max_stepz" in r.stderr


def test_distillation_bad_inputs_give_one_line(tmp_path):
    r = run_rf(
        "train", "experiment=toy_ode_init", "module.teacher_ckpt=null", f"data.folder={tmp_path / 'x'}", runs=tmp_path
    )
    assert r.returncode == 2 and "no ODE pairs" in r.stderr and "rf.make_ode_pairs" in r.stderr, r.stderr[-500:]
    r = run_rf("train", "experiment=toy_re_dmd", "method.beta=0", runs=tmp_path)
    assert r.returncode == 2 and "method.beta=0" in r.stderr and "Traceback" not in r.stderr, r.stderr[-500:]
    r = run_rf("train", "experiment=toy_re_dmd", "module.teacher_ckpt=/no/teacher.ckpt", runs=tmp_path)
    assert r.returncode == 2 and "/no/teacher.ckpt" in r.stderr, r.stderr[-500:]


def test_sigterm_saves_the_last_iteration_and_a_relaunch_continues(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "RF_RUNS": str(tmp_path), "OMP_NUM_THREADS": "2"}
    tiny = [o for o in TINY if not o.startswith("checkpoint_every")]  # no periodic save: only SIGTERM's
    cmd = [sys.executable, "-m", "rf.train", *tiny, "trainer.max_steps=100000", "checkpoint_every=100000"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = tmp_path / "toy_teacher" / "logs" / "version_0" / "hparams.yaml"
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(4)  # some iterations, none of them at a checkpoint_every boundary
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    last = tmp_path / "toy_teacher" / "checkpoints" / "last.ckpt"
    assert last.exists(), out[-2000:]
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert step > 0

    r = run_rf("train", *TINY, f"trainer.max_steps={step + 2}", runs=tmp_path)
    assert r.returncode == 0 and "resuming from" in r.stdout, r.stderr[-2000:]
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == step + 2
