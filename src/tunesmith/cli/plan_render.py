"""Rich tables for ``tunesmith plan``: one breakdown per config, then a summary across configs."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

GIB = 1024**3


def render(results: list[Any]) -> None:
    out = Console(highlight=False, soft_wrap=False)
    for r in results:
        out.print(_breakdown(r))
        for line in _details(r):
            out.print(line, markup=False)
        out.print()
    if len(results) > 1:
        out.print(_summary(results))


def _breakdown(r: Any) -> Table:
    s, m = r.setup, r.model
    title = (f"{r.name}: {m.model_type} {m.total_params / 1e9:.2f}B ({s.method}, {_adapter(s.adapter)}) "
             f"on {s.gpus} x {r.device.name}")
    table = Table(title=title, title_justify="left")
    table.add_column("per device")
    table.add_column("GiB", justify="right")
    table.add_column("how")
    for c in r.memory.components:
        table.add_row(c.name, f"{c.bytes / GIB:.2f}", c.note)
    device = f" of {r.device.memory_gib:.1f}" if r.device.memory_gib is not None else ""
    verdict = {True: "fits", False: "DOES NOT FIT", None: "no device size"}[r.fits]
    table.add_row("peak", f"{r.memory.peak_bytes / GIB:.2f}", f"{verdict}{device} GiB", style="bold")
    for name, peak in r.memory.by_sharding.items():
        table.add_row(f"  {name}", f"{peak / GIB:.2f}", "per device with this sharding")
    return table


def _details(r: Any) -> list[str]:
    d, t = r.data, r.time
    lines = [f"trainable: {r.trainable.trainable:,} of {r.model.total_params:,} parameters",
             f"data: {d.rows:,} rows, {d.tokens:,} tokens ({d.source}), longest batch {d.longest} tokens"]
    if t is not None:
        cost = f", cost {_money(t.cost)} ({t.devices} x {t.price_per_hour:g}/GPU-hour)" if t.cost is not None else ""
        lines.append(f"time: {_duration(t.hours)} = {t.tokens:,} tokens x {t.flops_per_token / 1e9:.2f} GFLOP "
                     f"[{t.factor}] / ({t.devices} x {t.peak_tflops:g} TFLOPS x MFU {t.mfu:g}){cost}")
    rec = r.recommendation
    if rec is not None:
        lines.append(f"recommended: {rec.method}, {_adapter(rec.adapter)}"
                     + (", gradient checkpointing" if rec.gradient_checkpointing else ""))
        lines += [f"  - {reason}" for reason in rec.reasons]
        hp = ", ".join(f"{k} {v['value']}" for k, v in rec.hyperparameters.items())
        lines.append(f"  defaults tunesmith would use: {hp}")
    lines += [f"note: {n}" for n in r.notes]
    return lines


def _summary(results: list[Any]) -> Table:
    table = Table(title="summary", title_justify="left")
    for col in ("config", "model", "method", "adapter", "peak GiB", "device GiB", "fits", "time", "cost"):
        table.add_column(col, justify="right" if col in ("peak GiB", "device GiB", "time", "cost") else "left")
    for r in results:
        t = r.time
        table.add_row(
            r.name, f"{r.model.total_params / 1e9:.2f}B", r.setup.method, _adapter(r.setup.adapter),
            f"{r.memory.peak_bytes / GIB:.2f}",
            f"{r.device.memory_gib:.1f}" if r.device.memory_gib is not None else "?",
            {True: "yes", False: "NO", None: "?"}[r.fits],
            _duration(t.hours) if t else "n/a",
            _money(t.cost) if t is not None and t.cost is not None else "n/a",
        )
    return table


def _money(cost: float) -> str:
    return "< 0.01" if cost < 0.01 else f"{cost:,.2f}"


def _adapter(adapter: str) -> str:
    from tunesmith.config.adapters import adapter_spec

    return "full" if adapter_spec(adapter).full else adapter


def _duration(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.1f} min"
    return f"{hours:.1f} h"
