"""Reading what users hand rf, defensively, and stopping cleanly: the pieces under the one-line errors and stops.

The entry points' answers are tested end to end in tests/integration/test_bad_inputs.py and test_interruption.py;
here the readers themselves, on damaged copies of real files, and the Stop context on real signals.
"""

from __future__ import annotations

import os
import signal
import sys

import pytest
import torch

from rf.lit.ode_pairs import MANIFEST, OdePairDataset, OdePairWriter
from rf.models.loading import read_state_dict
from rf.toy.text import check_toy_prompts
from rf.utils.files import read_prompt_file
from rf.utils.stop import Stop, Terminated

PROMPT = "a red circle moving fast to the right on a striped background"


def test_prompt_files_utf8_with_or_without_bom_blank_lines_skipped(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(f"\ufeff{PROMPT}\n\n   \nsecond line\r\n".encode())  # Windows: BOM and CRLF
    assert read_prompt_file(path) == [PROMPT, "second line"]


@pytest.mark.parametrize(
    "data, needle",
    [
        (PROMPT.encode("utf-16"), "is not UTF-8 text but UTF-16"),
        (PROMPT.encode("utf-32"), "is not UTF-8 text but UTF-32"),
        ("un café".encode("latin-1"), "is not UTF-8 text (byte 6 is not UTF-8)"),
        (b"abc\x00def\n", "holds NUL bytes"),
    ],
    ids=["utf16", "utf32", "latin1", "nul"],
)
def test_prompt_files_in_another_encoding_are_refused(tmp_path, data, needle):
    path = tmp_path / "p.txt"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        read_prompt_file(path)


def test_a_damaged_shard_read_without_checksums_is_one_error_naming_it(tmp_path):
    writer = OdePairWriter(tmp_path / "pairs", shard_size=2, meta={"seed": 0})
    writer.write_shard(torch.zeros(2, 2, 3, 1, 2, 2), ["a", "b"], [0, 1])
    shard = tmp_path / "pairs" / "shard_00000.safetensors"
    shard.write_bytes(shard.read_bytes()[:40])  # the header's length survives, the header does not
    data = OdePairDataset(tmp_path / "pairs", verify=False)  # verify=false: the checksums are not read
    with pytest.raises(ValueError, match=r"shard_00000.safetensors is damaged .*regenerate the pairs"):
        data[0]
    with pytest.raises(ValueError, match=r"fails its sha256 check"):
        OdePairDataset(tmp_path / "pairs")


@pytest.mark.parametrize("text", ["[]", '{"version": 1, "shards": "none"}', '{"version": 1, "meta": {}}'])
def test_a_manifest_of_another_layout_is_refused(tmp_path, text):
    (tmp_path / "pairs").mkdir()
    (tmp_path / "pairs" / MANIFEST).write_text(text)
    with pytest.raises(ValueError, match=r"(not an ODE-pair manifest|has version 'list')"):
        OdePairDataset(tmp_path / "pairs")


def test_state_dicts_of_another_kind_are_refused_naming_the_file(tmp_path):
    torch.save({"step": 3, "param_groups": [{"lr": 1.0}]}, tmp_path / "opt.pt")
    with pytest.raises(ValueError, match=r"opt.pt is a checkpoint of another kind"):
        read_state_dict(tmp_path / "opt.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list.pt is not a state dict or checkpoint \(found list\)"):
        read_state_dict(tmp_path / "list.pt")


def test_toy_prompts_strict_refuses_non_strict_warns_with_the_unknown_words():
    check_toy_prompts([PROMPT], strict=True, source="prompt")  # in the grammar: nothing to say
    with pytest.raises(ValueError, match=r"'a red sunset' is outside the toy grammar \(unknown words \['sunset'\]\)"):
        check_toy_prompts(["a red sunset"], strict=True, source="prompt")
    with pytest.warns(UserWarning, match=r"unknown words \['sunset'\]: streamed anyway"):
        check_toy_prompts(["a red sunset"], strict=False, source="prompt")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_stop_turns_the_first_signal_into_a_flag_and_the_second_into_an_unwind(sig, capsys, monkeypatch):
    before = signal.getsignal(sig)
    with Stop() as stop:
        assert not stop.requested
        os.kill(os.getpid(), sig)  # delivered to this (the main) thread before os.kill returns
        assert stop.requested and stop.signal == sig
        with pytest.raises(KeyboardInterrupt if sig == signal.SIGINT else Terminated):
            os.kill(os.getpid(), sig)
        monkeypatch.setattr(sys, "argv", ["ignored", "frames=9", "out=a b.mp4"])
        with pytest.raises(SystemExit) as done:
            stop.exit("3 of 9 frames in a b.mp4")
    assert done.value.code == 128 + sig and signal.getsignal(sig) is before  # the handlers are given back
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"stopped by {sig.name}: 3 of 9 frames in a b.mp4; continue with: python -m ")
    assert line.endswith("frames=9 'out=a b.mp4'")  # quoted, so it can be pasted back
