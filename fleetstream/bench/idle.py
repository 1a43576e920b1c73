"""``fleetstream bench --idle``: the fleet connected and silent (issue 18: "idle cost of the stack with 10,000
devices connected and silent: under 25 % of one core in total"; RSS per component at 10k connected and at 100k
registered with ``--registered``). Only the resource sampler runs: the latency probes would be load."""

from __future__ import annotations

import time

from .probes import ResourceSampler
from .runner import Run, _run_for, say

# not the stack: what the benchmark itself runs beside it
NOT_STACK = ("load-generator", "bench-probes")


class IdleRun(Run):
    def _load(self, fleet) -> None:
        cfg, gen = self.cfg, self.gen
        res = ResourceSampler(self.components, timeline_every_s=cfg.timeline_every_s)
        res.start()
        try:
            say(f"settling {cfg.idle_settle_s:.0f}s after the sessions connected")
            _run_for(gen, cfg.idle_settle_s)
            time.sleep(1.1)  # a sample inside the window's start
            cpu0, t0, since = dict(res.cpu_total_s), time.monotonic(), len(res.machine)
            disconnects0 = gen.stats.disconnects
            say(f"idle {cfg.duration_s:.0f}s: {gen.stats.connected} sessions connected, nothing published")
            _run_for(gen, cfg.duration_s)
            time.sleep(1.1)
            dt = time.monotonic() - t0
            cpu = {k: round(100 * max(0.0, v - cpu0.get(k, 0.0)) / dt, 1) for k, v in res.cpu_total_s.items()}
            rss_end = {k: round(v / 2**20, 1) for k, v in res.rss.items()}
            machine = res.machine[since:]
        finally:
            res.stop()
        stack = {k: v for k, v in cpu.items() if k not in NOT_STACK}
        self.report["idle"] = {
            "seconds": round(dt, 1), "connected": gen.stats.connected,
            "disconnects_during": gen.stats.disconnects - disconnects0, "sent": gen.stats.sent,
            "cpu_pct": cpu, "stack_cpu_pct_total": round(sum(stack.values()), 1),
            "rss_mb_end": rss_end, "stack_rss_mb_total": round(sum(v for k, v in rss_end.items() if k not in NOT_STACK), 1),
            "machine_cpu_pct": round(sum(machine) / max(1, len(machine)), 1)}
        self.report["resources_timeline"], self.report["rss_growth"] = res.timeline, res.growth()
        gen.stop()
        say(f"idle: stack {self.report['idle']['stack_cpu_pct_total']} % of one core in total; {cpu}")
