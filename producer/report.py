"""What the CLI shows while a block runs and after: a plain-text progress bar and a summary."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from engine.errors import STATUSES
from engine.model import Result


class ProgressBar:
    """`[#########.........]  812/2000  41%  1,530 tx/s` on one line of stderr.

    On a terminal it redraws in place (at most ~20 times a second); otherwise it
    prints a line at every 10% so logs stay short.
    """

    def __init__(self, total: int, label: str = "results", stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        self.update(done)

    def line(self, done: int, width: int = 30) -> str:
        frac = min(done / self.total, 1.0)
        filled = int(frac * width)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = done / elapsed
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {done:>{len(str(self.total))}}/{self.total}"
            f" {frac:4.0%} {self.label}  {rate:,.0f} tx/s"
        )

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.tty:
            if done < self.total and now - self._last_draw < 0.05:
                return
            self._last_draw = now
            self.stream.write("\r" + self.line(done))
        else:
            decile = int(10 * done / self.total)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(self.line(done) + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r" + self.line(self.done) + "\n")
            self.stream.flush()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass(slots=True)
class Summary:
    txs: int
    seconds: float
    by_status: dict[str, int] = field(default_factory=dict)
    fee_used: int = 0
    fee_limit: int = 0
    fee_by_status: dict[str, int] = field(default_factory=dict)
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    missing: int = 0

    @property
    def tx_per_s(self) -> float:
        done = self.txs - self.missing
        return done / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "txs": self.txs,
            "missing": self.missing,
            "seconds": round(self.seconds, 4),
            "tx_per_s": round(self.tx_per_s, 1),
            "by_status": self.by_status,
            "fees": {
                "used": self.fee_used,
                "limit": self.fee_limit,
                "refunded": self.fee_limit - self.fee_used,
                "by_status": self.fee_by_status,
            },
            "latency_ms": {
                "p50": round(self.latency_p50_ms, 2),
                "p99": round(self.latency_p99_ms, 2),
            },
        }


def summarize(
    tx_ids: Sequence[str],
    results: Mapping[str, Result],
    seconds: float,
    latencies_s: Sequence[float] = (),
) -> Summary:
    statuses: Counter[str] = Counter()
    fees: Counter[str] = Counter()
    summary = Summary(txs=len(tx_ids), seconds=seconds)
    for tx_id in tx_ids:
        result = results.get(tx_id)
        if result is None:
            summary.missing += 1
            continue
        statuses[result.status] += 1
        fees[result.status] += result.fee.used
        summary.fee_used += result.fee.used
        summary.fee_limit += result.fee.limit
    order = {s: i for i, s in enumerate(STATUSES)}
    summary.by_status = dict(sorted(statuses.items(), key=lambda kv: order.get(kv[0], 99)))
    summary.fee_by_status = {s: fees[s] for s in summary.by_status}
    ms = [x * 1000 for x in latencies_s]
    summary.latency_p50_ms = percentile(ms, 50)
    summary.latency_p99_ms = percentile(ms, 99)
    return summary


def render_summary(summary: Summary) -> str:
    width = max([len(s) for s in summary.by_status] + [8])
    lines = [f"{summary.txs - summary.missing}/{summary.txs} txs in {summary.seconds:.2f} s"
             f"  ({summary.tx_per_s:,.0f} tx/s)"]
    for status, count in summary.by_status.items():
        lines.append(
            f"  {status:<{width}} {count:>7}   fee {summary.fee_by_status.get(status, 0):>14,}"
        )
    if summary.missing:
        lines.append(f"  {'missing':<{width}} {summary.missing:>7}")
    lines.append(
        f"fees: used {summary.fee_used:,} of {summary.fee_limit:,} limit"
        f" (refunded {summary.fee_limit - summary.fee_used:,})"
    )
    lines.append(
        f"latency (submit -> result seen): p50 {summary.latency_p50_ms:.1f} ms,"
        f" p99 {summary.latency_p99_ms:.1f} ms"
    )
    return "\n".join(lines)


def describe_result(result: Result) -> str:
    """A readable summary of one Result (the CLI without --json)."""
    lines = [f"tx {result.tx_id}: {result.status}"]
    if result.error:
        lines.append(f"  error: {result.error.get('kind', '')}: {result.error.get('message', '')}")
    if result.return_data:
        data = result.return_data
        shown = data.hex() if len(data) <= 64 else data[:64].hex() + "..."
        extra = f" (u64 LE {int.from_bytes(data, 'little')})" if len(data) == 8 else ""
        lines.append(f"  return: {shown}{extra}")
    fee = result.fee
    parts = ", ".join(f"{k} {v:,}" for k, v in sorted(fee.breakdown.items()) if v)
    lines.append(f"  fee: used {fee.used:,} of {fee.limit:,} ({fee.schedule})" +
                 (f": {parts}" if parts else ""))
    for topic, data in result.events:
        lines.append(f"  event {topic.decode('utf-8', 'replace')}: {data.hex()}")
    for line in result.logs:
        lines.append(f"  log: {line.decode('utf-8', 'replace')}")
    if result.write_set:
        lines.append(f"  writes: {len(result.write_set)} key(s) (apply with a block commit)")
    if result.worker:
        lines.append(f"  worker: {result.worker}")
    return "\n".join(lines)


def render_record(record: dict[str, Any], seconds: float | None = None) -> str:
    """A block's commit record (producer/commit.py's CommitReport.record()) as text."""
    fees = record["fees"]
    took = "" if seconds is None else f", {seconds:.2f} s"
    lines = [
        f"committed block {record['height']}: {record['committed']}/{record['txs']} txs, "
        f"{record['reexecuted']} re-executed (stale reads){took}",
        f"  fee total {fees['total']:,}; by status "
        + ", ".join(f"{k} {v:,}" for k, v in fees["by_status"].items()),
        f"  state version {record['version']}, root {record['state_root']}",
    ]
    if record["not_committed"]:
        lines.append(f"  not committed: {len(record['not_committed'])} "
                     + json.dumps(dict(list(record["not_committed"].items())[:5])))
    return "\n".join(lines)
