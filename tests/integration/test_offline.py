"""Offline by construction: rf never reaches for the network, and says so in its code.

The demo chain (teacher -> ODE pairs -> ODE init -> Re-DMD -> a stream with a prompt switch: the commands
`python -m rf.demo` runs, here at test size) runs with HF_HUB_OFFLINE=1, proxies pointing at a closed
local port, and a `sitecustomize.py` on PYTHONPATH that makes every Python process of the chain refuse
any connection or name lookup that leaves the machine, writing each attempt to a log. The chain must
finish and the log must stay empty. A static check reads every `from_pretrained(` call in src/rf: each
passes local_files_only=True, and those of transformers classes also trust_remote_code=False.
"""

import ast
import subprocess
import sys
from pathlib import Path

from rf.utils.video import probe
from tests.cli import run_rf

SRC = Path(__file__).resolve().parents[2] / "src" / "rf"

NO_NETWORK = '''
"""Test harness: refuse every connection and name lookup that leaves this machine, logging each attempt."""
import os
import socket

_LOG = os.environ["RF_TEST_NETWORK_LOG"]
_LOCAL = ("localhost", "::1", "0.0.0.0")


def _is_local(host):
    return host is None or str(host) in _LOCAL or str(host).startswith("127.")


def _refuse(what):
    with open(_LOG, "a") as f:
        f.write(f"{what}\\n")
    raise OSError(101, f"network is blocked in this test: {what}")


def _guard(method):
    def guarded(self, address):
        if isinstance(address, tuple) and not _is_local(address[0]):
            _refuse(f"{method.__name__} {address}")
        return method(self, address)

    return guarded


def _getaddrinfo(host, *args, _original=socket.getaddrinfo, **kwargs):
    if not _is_local(host):
        _refuse(f"getaddrinfo {host}")
    return _original(host, *args, **kwargs)


socket.socket.connect = _guard(socket.socket.connect)
socket.socket.connect_ex = _guard(socket.socket.connect_ex)
socket.getaddrinfo = _getaddrinfo
'''

# The toy models at test size: the same overrides for every step, so the checkpoints fit each other.
TINY = ["model.video.height=16", "model.video.width=16", "model.transformer.num_layers=1",
        "model.transformer.ffn_dim=64", "model.transformer.num_attention_heads=2"]  # fmt: skip
FIRST = "a red circle moving fast to the right on a striped background"
SECOND = "a blue square and a yellow triangle moving slowly upwards on a dotted background"


def test_the_demo_chain_runs_with_no_network(tmp_path, monkeypatch):
    (tmp_path / "no_network").mkdir()
    (tmp_path / "no_network" / "sitecustomize.py").write_text(NO_NETWORK)
    log = tmp_path / "network.log"
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "no_network"))
    monkeypatch.setenv("RF_TEST_NETWORK_LOG", str(log))
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setenv("NO_PROXY", "")

    # the harness works: a connection out is refused and logged (an address, and a name to look up)
    probe_net = "import socket\nfor a in [('192.0.2.1', 443), ('huggingface.co', 443)]:\n" \
                "    try: socket.create_connection(a, timeout=1)\n    except OSError as e: print(e)"  # fmt: skip
    r = subprocess.run([sys.executable, "-c", probe_net], capture_output=True, text=True, timeout=60)
    assert r.stdout.count("network is blocked in this test") == 2, r.stdout + r.stderr
    assert len(log.read_text().splitlines()) == 2
    log.unlink()

    steps = [
        ("train", "experiment=toy_teacher", "trainer.max_steps=2", "data.batch_size=2"),
        ("make_ode_pairs", "experiment=toy_ode_pairs", "num_pairs=2", "batch_size=2", "ode_steps=4", "latent_frames=3"),
        ("train", "experiment=toy_ode_init", "trainer.max_steps=2", "data.batch_size=2"),
        ("train", "experiment=toy_re_dmd", "module.max_iterations=1", "module.latent_frames=3", "data.batch_size=1",
         "callbacks.video_log.latent_frames=3"),
        ("generate", f"ckpt={tmp_path / 'toy_re_dmd' / 'checkpoints' / 'last.ckpt'}", "seconds=2", "sink=ema_sink",
         f'schedule=[{{at:0,prompt:"{FIRST}"}},{{at:1,prompt:"{SECOND}"}}]', f"out={tmp_path / 'demo.mp4'}"),
    ]  # fmt: skip
    for entry, *args in steps:
        r = run_rf(entry, *args, *TINY, runs=tmp_path)
        assert r.returncode == 0, f"{entry} {args}:\n{r.stderr[-3000:]}"
    assert "(generator)" in r.stdout and "2 prompts" in r.stdout  # the distilled student streamed, switching
    assert probe(tmp_path / "demo.mp4")["frames"] == 18
    assert (tmp_path / "toy_re_dmd" / "videos" / "iter_000001.mp4").is_file()
    assert not log.exists(), log.read_text()  # nothing in the chain tried to go out


def from_pretrained_calls(path: Path):
    """(receiver, keyword arguments) of every `X.from_pretrained(...)` call in a file; `**name` expands a
    `name = dict(...)` assigned in the same file."""
    tree = ast.parse(path.read_text())
    dicts = {
        node.targets[0].id: {k.arg: k.value for k in node.value.keywords}
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "dict"
    }  # fmt: skip
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "from_pretrained":
            kwargs = {}
            for k in node.keywords:
                kwargs.update({k.arg: k.value} if k.arg else dicts.get(getattr(k.value, "id", None), {}))
            yield ast.unparse(node.func.value), kwargs


def transformers_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "transformers"
        for alias in node.names
    }


def is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


# Calls that lack an argument today, in files other people are editing: once each passes it, remove its
# line (the test fails until then, and fails for any new call that lacks one).
KNOWN_GAPS: set[str] = set()


def test_every_loader_is_local_only():
    calls, gaps = 0, set()
    for path in sorted(SRC.rglob("*.py")):
        hf = transformers_names(path)
        for receiver, kwargs in from_pretrained_calls(path):
            calls += 1
            where = f"{path.relative_to(SRC)} {receiver}.from_pretrained"
            if not is_const(kwargs.get("local_files_only"), True):
                gaps.add(f"{where}: local_files_only=True")
            if receiver in hf and not is_const(kwargs.get("trust_remote_code"), False):
                gaps.add(f"{where}: trust_remote_code=False")
    assert calls >= 5  # umT5 (tokenizer, encoder), VideoAlign (tokenizer, Qwen2-VL), diffusers (Wan, VAE)
    assert gaps == KNOWN_GAPS
