"""Smoke test of `wesfarm bench`'s in-process part at its tiny scale: every key is there and
every in-process figure is a positive number; and of its block-commit part on a small
two-worker farm. No timing assertions: the figures belong to the bench, not to the test
suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import kernels
from bench.commit_bench import COMMIT_KEYS, run_commit_bench
from bench.common import Report
from bench.latency_soak import SOAK_KEYS, run_soak
from bench.probes import PROBES, code
from bench.runner import FEE_KEYS, IN_PROCESS_KEYS, KEYS, REPORT_KEYS, in_process, print_table
from bench.scale_bench import SCALE_KEYS
from bench.state_bench import STATE_KEYS
from bench.workloads import WORKLOADS
from tests.support.farm import two_worker_farm


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


@pytest.fixture(scope="module")
def report() -> Report:
    rep = Report(quiet=True)
    in_process(rep, "tiny")
    return rep


def test_in_process_figures_are_positive_numbers(report: Report) -> None:
    assert set(FEE_KEYS) <= set(IN_PROCESS_KEYS)
    for key in IN_PROCESS_KEYS:
        assert key in report.values, f"{key} missing"
        value = report.values[key]
        if key == "ns_per_fee_unit":
            assert set(value) == {w.name for w in WORKLOADS}
            assert all(_positive(v) for v in value.values()), value
        else:
            assert _positive(value), f"{key} = {value!r}"


def test_json_has_exactly_the_issue_keys(report: Report, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    values = {key: report.values.get(key) for key in KEYS}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(values))
    assert list(json.loads(path.read_text())) == list(KEYS)
    assert len(KEYS) == 20
    print_table(values, report)
    table = capsys.readouterr().out
    for key in KEYS:
        assert key in table


def test_workload_and_kernel_modules_pass_the_engine_policy() -> None:
    from config import load_settings
    from engine.policy import check_module

    limits = load_settings().limits
    for name in (*kernels.WORKLOADS, *kernels.PROBES):
        info = check_module(kernels.workload_wasm(name), limits)
        assert info.entry_points == ("run",)
    for probe in PROBES:  # every calibration probe and workload class deploys too
        for run in (probe.small, probe.large):
            check_module(code(run.contract), limits)
    assert check_module(kernels.generated_module(20_000), limits).functions > 10


async def test_commit_figures_on_two_workers(redis_url: str, key_prefix: str,
                                            tmp_path: Path) -> None:
    """Both blocks (40 transfers each) committed on the farm end in the sequential state."""
    rep = Report(quiet=True)
    with two_worker_farm(redis_url, key_prefix, tmp_path) as env:
        await run_commit_bench(rep, env.settings(), 40)
    assert (*KEYS, *FEE_KEYS, *COMMIT_KEYS, *STATE_KEYS, *SOAK_KEYS, *SCALE_KEYS) == REPORT_KEYS
    assert set(COMMIT_KEYS) <= set(rep.values), rep.notes
    assert rep.values["commit_digest_match"] is True, rep.notes
    assert rep.extras["commit_root_exact"] is True  # after 100k more keys, still exact
    assert rep.values["commit_low_conflict_rate"] == 0  # no account in two transfers
    assert 0 < rep.values["commit_high_conflict_rate"] <= 1  # 40 transfers among 20 accounts
    for block in ("low", "high"):
        for figure in ("farm_s", "sequential_s", "speedup"):
            assert _positive(rep.values[f"commit_{block}_{figure}"])
    assert not rep.notes


async def test_soak_on_two_workers(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    """A short soak: every key is set, every tx it offered ended ok, and a block committed."""
    rep = Report(quiet=True)
    with two_worker_farm(redis_url, key_prefix, tmp_path) as env:
        figures = await run_soak(rep, env.settings(), soak_s=2.0, capacity_s=1.0)
    assert set(SOAK_KEYS) <= set(rep.values), rep.notes
    assert figures.txs > 0 and figures.not_ok == 0, figures.not_ok_sample
    assert figures.p50_ms <= figures.p90_ms <= figures.p99_ms <= figures.max_ms
    assert figures.commits and sum(c.txs for c in figures.commits) == figures.txs


def test_scale_out_figures_at_the_tiny_scale() -> None:
    """Both farms run every block ok; both workers of the second ran part of each."""
    from bench.scale_bench import scale_figures

    rep = Report(quiet=True)
    scale_figures(rep, "tiny")
    assert set(SCALE_KEYS) <= set(rep.values), rep.notes
    assert all(_positive(rep.values[key]) for key in SCALE_KEYS)
    assert 0 < rep.values["worker_share_min"] <= 0.5


async def test_realistic_state_figures_on_two_workers(redis_url: str, key_prefix: str,
                                                      tmp_path: Path) -> None:
    """Every figure is a positive number, and every transfer ended ok or reverted."""
    from bench.state_bench import run_state_bench

    rep = Report(quiet=True)
    with two_worker_farm(redis_url, key_prefix, tmp_path) as env:
        await run_state_bench(rep, env.settings(), [w.pid for w in env.workers], 500, 100)
    assert all(_positive(rep.values[key]) for key in STATE_KEYS), rep.values
    parts = rep.extras["state_cpu_us_per_tx_by_part"]
    assert set(parts["access"]) == {"redis", "workers", "producer"}
