"""A comparison of policies' reports as a text table, a JSON object and a PNG bar chart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scheduler.sim.bounds import LatencyFloor
from scheduler.sim.metrics import SimResult

GB = 1e9


def as_json(results: Sequence[SimResult], floor: LatencyFloor | None = None) -> dict[str, Any]:
    """{"policies": {name: figures}, "floor": {...}}: deterministic for a seed (wall times are left
    out); "floor" only when given."""
    out: dict[str, Any] = {"policies": {result.report.policy: result.report.to_json() for result in results}}
    if floor is not None:
        out["floor"] = {
            "mean_latency_s": floor.mean_s,
            "p95_latency_s": floor.p95_s,
            "alone_mean_latency_s": floor.alone_mean_s,
            "capacity_mean_latency_s": floor.capacity_mean_s,
            "window_mean_latency_s": floor.window_mean_s,
            "window_p95_latency_s": floor.window_p95_s,
            "jobs": floor.jobs,
        }
    return out


def as_table(results: Sequence[SimResult], floor: LatencyFloor | None = None) -> str:
    """One row per policy, the floor no policy can beat, then each policy's owners' shares and how
    long it took to simulate."""
    width = max([12, *(len(result.report.policy) for result in results)])
    header = (
        f"{'policy':<{width}} {'done':>7} {'fail':>5} {'left':>5} {'mean s':>9} {'p50 s':>9} {'p95 s':>9} "
        f"{'p99 s':>9} {'makespan h':>10} {'busy':>5} {'cold':>6} {'GB down':>8} {'OOM':>5} "
        f"{'ETA err':>7} {'sub ETA':>7} {'Jain':>5}"
    )
    lines = [header]
    for result in results:
        r = result.report
        lines.append(
            f"{r.policy:<{width}} {r.completed:>7} {r.failed:>5} {r.unfinished:>5} {r.mean_latency_s:>9.1f} "
            f"{r.p50_latency_s:>9.1f} {r.p95_latency_s:>9.1f} {r.p99_latency_s:>9.1f} "
            f"{r.makespan_s / 3600:>10.2f} {r.gpu_busy_share:>5.0%} {r.cold_loads:>6} "
            f"{r.bytes_downloaded / GB:>8.1f} {r.oom_failures:>5} {_figure(r.eta_error):>7} "
            f"{_figure(r.submit_eta_error):>7} {_figure(r.jain_fairness):>5}"
        )
    if floor is not None:
        lines.append(
            f"{'floor':<{width}} {floor.jobs:>7} {'':>5} {'':>5} {floor.mean_s:>9.1f} {'':>9} "
            f"{floor.p95_s:>9.1f}"
            "   (no policy that finishes every job beats it: see scheduler.sim.bounds)"
        )
    lines.append("")
    for result in results:
        r = result.report
        shares = ", ".join(f"{owner} {share:.0%}" for owner, share in r.owner_share.items())
        lines.append(f"{r.policy}: GPU-time by owner: {shares or '-'}")
        if "preemptions" in r.extra:
            x = r.extra
            lines.append(
                f"{r.policy}: priority 75-100: {x['high_jobs']:.0f} jobs, "
                f"mean {x['high_mean_latency_s']:.1f} s, p95 {x['high_p95_latency_s']:.1f} s; "
                f"priority 0-24: mean {x['low_mean_latency_s']:.1f} s; {x['preemptions']:.0f} preemptions "
                f"({x['checkpoint_s']:.0f} s of checkpoints)"
            )
        lines.append(
            f"{r.policy}: {r.jobs} jobs, {result.simulated_s / 3600:.1f} h simulated "
            f"in {result.wall_s:.1f} s ({result.policy_wall_s:.1f} s in the policy, {r.place_calls} calls)"
        )
    return "\n".join(lines)


def write_chart(results: Sequence[SimResult], path: Path) -> None:
    """Three bar charts side by side: mean and p95 latency, and GB downloaded, per policy."""
    from PIL import Image, ImageDraw  # only when a chart is asked for

    panels: list[tuple[str, list[tuple[str, float]]]] = [
        ("mean latency (s)", [(r.report.policy, r.report.mean_latency_s) for r in results]),
        ("p95 latency (s)", [(r.report.policy, r.report.p95_latency_s) for r in results]),
        ("downloaded (GB)", [(r.report.policy, r.report.bytes_downloaded / GB) for r in results]),
    ]
    width, height, margin = 320, 300, 40
    image = Image.new("RGB", (width * len(panels), height), "white")
    draw = ImageDraw.Draw(image)
    for index, (title, bars) in enumerate(panels):
        _panel(draw, index * width, width, height, margin, title, bars)
    image.save(path, format="PNG")


_COLOURS = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")


def _panel(
    draw: Any, left: int, width: int, height: int, margin: int, title: str, bars: list[tuple[str, float]]
) -> None:
    draw.text((left + margin, 10), title, fill="black")
    top, bottom = margin, height - margin
    draw.line((left + margin, bottom, left + width - 10, bottom), fill="black")
    peak = max((value for _, value in bars), default=0.0) or 1.0
    slot = (width - margin - 10) / max(len(bars), 1)
    for i, (name, value) in enumerate(bars):
        x0 = left + margin + i * slot + slot * 0.15
        x1 = x0 + slot * 0.7
        y0 = bottom - (bottom - top) * value / peak
        draw.rectangle((x0, y0, x1, bottom), fill=_COLOURS[i % len(_COLOURS)])
        draw.text((x0, max(top - 12, y0 - 12)), _label(value), fill="black")
        draw.text((x0, bottom + 5), name[:12], fill="black")


def _figure(value: float | None) -> str:
    # "-" where nothing was measured, so a missing figure never reads as a perfect one.
    return "-" if value is None else f"{value:.2f}"


def _label(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
