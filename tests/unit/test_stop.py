"""rf.utils.stop.continue_command: the line printed on a clean stop is the command the user typed."""

import sys

from rf.utils.stop import continue_command


def test_continue_command_is_python_outside_torchrun(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr(sys, "argv", ["train.py", "experiment=toy_re_dmd", "name=a b"])
    assert continue_command("rf.train") == "python -m rf.train experiment=toy_re_dmd 'name=a b'"


def test_continue_command_names_torchrun_and_its_process_count(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setenv("GROUP_WORLD_SIZE", "1")
    monkeypatch.setattr(sys, "argv", ["train.py", "trainer=fsdp2"])
    assert continue_command("rf.train") == "torchrun --nproc-per-node=4 -m rf.train trainer=fsdp2"
    monkeypatch.setenv("GROUP_WORLD_SIZE", "2")
    assert continue_command("rf.train") == "torchrun --nproc-per-node=4 --nnodes=2 -m rf.train trainer=fsdp2"
