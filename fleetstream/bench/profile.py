"""py-spy on every Python component during a load step: collapsed stacks on disk, and the top frames
by own time and by inclusive time in the report, so "where does the time go" travels with the numbers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_COMPONENTS = ("gateway", "sink", "streams", "connector-mqtt", "load-generator")


class Profiler:
    def __init__(self, out_dir: Path, rate_hz: int = 50):
        self.out_dir, self.rate_hz = out_dir, rate_hz
        beside = Path(sys.executable).parent / "py-spy"  # the dev extra installs it into the venv
        self.exe = str(beside) if beside.exists() else shutil.which("py-spy")
        self.procs: list[tuple[str, Path, subprocess.Popen]] = []

    @property
    def available(self) -> bool:
        return self.exe is not None

    def start(self, components: dict[str, tuple[list[int], bool]], seconds: float, tag: str) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, (pids, _) in components.items():
            if name not in PY_COMPONENTS:
                continue
            for i, pid in enumerate(pids):
                out = self.out_dir / f"{tag}-{name}-{i}.txt"
                # --nonblocking: do not pause the target (it would distort the latency being measured)
                argv = [self.exe, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(self.rate_hz),
                        "--nonblocking", "-f", "raw", "-o", str(out)]
                self.procs.append((name, out, subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                                               stderr=subprocess.DEVNULL)))

    def finish(self, timeout: float = 60) -> dict[str, dict]:
        summaries: dict[str, dict] = {}
        for name, out, proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
            if out.exists():
                prev = summaries.get(name)
                summaries[name] = summarise(out.read_text(), prev)
        self.procs.clear()
        return {n: _top(s) for n, s in summaries.items()}


def summarise(collapsed: str, acc: dict | None = None) -> dict:
    """Collapsed lines are ``frame;frame;...;leaf count`` (py-spy's raw format)."""
    acc = acc or {"own": Counter(), "incl": Counter(), "total": 0}
    for line in collapsed.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        frames = [_short(f) for f in stack.split(";")]
        acc["total"] += n
        acc["own"][frames[-1]] += n
        for f in set(frames):
            acc["incl"][f] += n
    return acc


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" → "func (module.py)" so samples on different lines add up
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})" if where else name


def _top(acc: dict, n: int = 12) -> dict:
    total = max(1, acc["total"])
    return {"samples": acc["total"],
            "own": [[f, round(100 * c / total, 1)] for f, c in acc["own"].most_common(n)],
            "inclusive": [[f, round(100 * c / total, 1)] for f, c in acc["incl"].most_common(n * 3)
                          if not f.startswith(("<module>", "run (threading.py", "_bootstrap"))][:n]}
