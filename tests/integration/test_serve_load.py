"""Load test on localhost: 20 visitors for 60 s against the shipped toy student on the CPU (experiments/serve/load.py
against `python -m rf.serve` in a subprocess, whose memory /proc/PID/status gives).

The issue's four conditions:
  1. every visitor is either streaming or told its queue position: all 20 hear `started` or `queued` for every
     Start, within 5 s (load.py counts a Start with no answer as an error);
  2. no error responses other than the documented refusals (queue_size=19 holds everyone: none expected either);
  3. server memory flat: its resident memory over the loaded minute grows by less than 5% (the server was warmed up
     by the lone run before it, in which the allocator reaches its working size);
  4. the running stream keeps its frame rate within 10% of a lone stream's.

What makes the 10% fair on 2 shared cores:
  - the same measurement both ways: load.py's frames received per second of wall time, counted on the client side,
    with the same visitor behaviour (Start, watch 3 s, close the page, open it again), so stream start-up and
    hand-over cost the same share of the time in both;
  - back to back on the same warm server: a lone run of 30 s, the loaded minute, another lone run of 30 s; the lone
    rate is the two together (60 s, as long as the loaded run), so a drift of the machine's load from other
    processes during the two minutes weighs on both sides alike;
  - what else the machine did is measured (/proc/stat less the server and load.py): outside CI, where nothing else
    runs, a shortfall that coincides with another process taking a quarter core more during the loaded minute
    than during the lone runs is reported as a skip, not a pass or a failure (a shared machine's noise);
  - the server streams flat out (pace=false: in real time both would show the video's 8 fps whatever the load) on
    one torch thread (threads=1), which leaves the second core to its event loop and to the 20 clients, so what
    is measured is whether the visitors slow the generator, not whether two processes fight over one core.
"""

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
LOAD = ROOT / "experiments" / "serve" / "load.py"


TICK = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat)."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / TICK


def process_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def load(url: str, visitors: int, seconds: float, pid: int, out: Path) -> dict:
    """load.py's report, plus `others`: the cores busy with anything but the server and load.py meanwhile."""
    command = [sys.executable, str(LOAD), f"--url={url}", f"--visitors={visitors}", f"--seconds={seconds}",
               f"--pid={pid}", f"--out={out}"]  # fmt: skip
    machine, server, client = busy_seconds(), process_seconds(pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    assert r.returncode == 0, r.stderr
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = used.ru_utime + used.ru_stime - client.ru_utime - client.ru_stime
    report = json.loads(out.read_text())
    others = busy_seconds() - machine - (process_seconds(pid) - server) - client
    report["others"] = round(max(0.0, others) / report["wall"], 2)
    print(r.stdout.strip(), f"(other processes: {report['others']} cores)")
    return report


def test_twenty_visitors_for_a_minute(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "rf.serve", "port=0", "pace=false", "queue_size=19", "threads=1"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                              cwd=tmp_path)  # fmt: skip
    try:
        for line in server.stdout:
            if match := re.search(r"serving \S+ on (http://\S+)", line):
                url = match[1]
                break
        else:
            raise AssertionError(f"rf.serve ended before serving (status {server.wait()})")
        lone_before = load(url, 1, 30, server.pid, tmp_path / "lone_before.json")
        loaded = load(url, 20, 60, server.pid, tmp_path / "loaded.json")
        lone_after = load(url, 1, 30, server.pid, tmp_path / "lone_after.json")
    finally:
        server.terminate()
        status = server.wait(timeout=60)
    assert status == 0 and "stopped:" in server.stdout.read()

    # 1. everyone streams or knows its place; 2. no errors, no refusals (the queue holds all 19 who wait)
    assert loaded["told"] == 20 and loaded["max_position"] == 19, loaded
    assert loaded["unanswered"] == 0 and loaded["answered"] == loaded["starts"], loaded
    assert loaded["errors"] == [] and loaded["refusals"] == 0, loaded["errors"]
    assert lone_before["errors"] == lone_after["errors"] == []

    # 3. memory flat over the loaded minute
    rss = loaded["rss_mb"]
    assert len(rss) >= 50 and max(rss) <= 1.05 * rss[0], rss

    # 4. the running stream's frame rate, loaded against lone (measured alike, back to back)
    lone = (lone_before["frames"] + lone_after["frames"]) / (lone_before["wall"] + lone_after["wall"])
    ratio = loaded["fps"] / lone
    print(f"frames/s: lone {lone:.2f}, with 20 visitors {loaded['fps']:.2f} ({ratio:.3f} of lone); server RSS "
          f"{rss[0]} -> {rss[-1]} MB (max {max(rss)})")  # fmt: skip
    outside = loaded["others"] - (lone_before["others"] + lone_after["others"]) / 2
    if ratio < 0.9 and outside > 0.25 and not os.environ.get("CI"):
        pytest.skip(
            f"not comparable: other processes took {outside:.2f} more cores during the loaded minute than in the "
            f"lone runs (frame rate {ratio:.3f} of lone); CI's machine runs nothing else"
        )
    assert ratio >= 0.9, (lone_before, loaded, lone_after)
