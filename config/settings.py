"""Settings from `WESFARM_*` environment variables and an optional TOML file.

Nested groups use a double underscore: `WESFARM_LIMITS__MAX_MEMORY_PAGES=64`,
`WESFARM_FEES__STORAGE_WRITE_BYTE=40`. The TOML file (`WESFARM_CONFIG_FILE`) uses
tables `[limits]` and `[fees]`. Environment variables win over the file.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"  # used when redis_url is unset
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def available_cpus() -> int:
    """The CPUs this process may use: its affinity, within its cgroup's CPU quota (a
    container's `cpus:` limit), at least 1."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    count = count or os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


class SettingsError(ValueError):
    """Invalid settings: the message names each offending setting."""

    exit_code = 2  # a command that meets one ends as a usage error (producer/exits.py)


class PolicyLimits(BaseModel):
    """Limits a module, a job and an execution must keep (ABI defaults; lower is allowed).

    All of them are consensus: they join the engine fingerprint. The compile budget (code,
    body, locals, loop depth, segments) is what keeps Cranelift's superlinear cases out;
    docs/FEES.md gives the measurements behind each value."""

    model_config = ConfigDict(extra="forbid")

    max_module_bytes: int = Field(8 * 1024 * 1024, gt=0)
    max_functions: int = Field(20_000, gt=0)
    max_locals_per_function: int = Field(1_024, gt=0)
    max_code_bytes: int = Field(1024 * 1024, gt=0, description="the code section, in all")
    max_function_bytes: int = Field(128 * 1024, gt=0, description="one function body")
    max_function_weight: int = Field(
        4 * 1024 * 1024, gt=0, description="one function's locals × its body bytes")
    max_module_weight: int = Field(
        8 * 1024 * 1024, gt=0, description="the sum of every function's locals × body bytes")
    max_loop_depth: int = Field(64, gt=0, description="loops nested in loops")
    max_data_segments: int = Field(1_024, ge=0)
    max_element_segments: int = Field(1_024, ge=0)
    max_memory_pages: int = Field(256, gt=0, le=65_536)
    max_table_elements: int = Field(10_000, ge=0)
    max_globals: int = Field(1_024, ge=0)
    max_data_bytes: int = Field(4 * 1024 * 1024, ge=0)
    max_exports: int = Field(1_024, gt=0)
    max_wasm_stack_bytes: int = Field(512 * 1024, ge=64 * 1024)
    max_input_bytes: int = Field(64 * 1024, ge=0)
    max_key_bytes: int = Field(256, gt=0, le=256)
    max_value_bytes: int = Field(64 * 1024, gt=0, le=64 * 1024)
    max_return_bytes: int = Field(64 * 1024, ge=0, le=64 * 1024)
    max_logs: int = Field(64, ge=0)
    max_log_bytes: int = Field(1_024, ge=0)
    max_events: int = Field(256, ge=0)
    max_event_topic_bytes: int = Field(64, ge=0)
    max_event_data_bytes: int = Field(4_096, ge=0)
    max_write_entries: int = Field(1_024, ge=0, description="distinct keys a tx may write")
    max_write_bytes: int = Field(1024 * 1024, ge=0, description="keys + values a tx may write")
    max_read_entries: int = Field(2_048, ge=0, description="distinct keys a tx may read")
    max_fee_limit: int = Field(3_000_000_000, gt=0, le=10**15)
    # No fee limit may outlast its timeout: a job may ask at most this many fee units per
    # millisecond of its timeout, set so that even the worst workload class (loads that
    # miss every cache) spends a fee limit in half its timeout (docs/FEES.md).
    max_fee_per_timeout_ms: int = Field(100_000, gt=0)
    max_timeout_ms: int = Field(30_000, gt=0)
    max_call_depth: int = Field(8, ge=1, le=8, description="frames on a transaction's "
                                "stack, its own included (1: every wes.call is DENIED)")


MAX_PRICE = 10**9  # fee arithmetic is int64 in engine._native: n (< 2^33) × price fits


class FeePrices(BaseModel):
    """The pricing schedule in fee units: 1 unit = 1 wasmtime fuel unit (docs/FEES.md).

    Derived by `wesfarm calibrate` so every workload class buys about the same wall
    time per fee unit (docs/FEES.md)."""

    model_config = ConfigDict(extra="forbid")

    version: str = "wes-fee-7"
    instruction: int = Field(10, gt=0, le=MAX_PRICE, description="per unit of wasmtime fuel")
    # Fuel the deploy-time instrumentation adds (engine/instrument.py), in fuel units: what a
    # loop iteration, a branch, a call, a load and a divide cost beyond the one fuel wasmtime
    # charges for them.
    loop_fuel: int = Field(16, ge=0, le=1_000, description="per loop iteration")
    branch_fuel: int = Field(0, ge=0, le=1_000, description="per br_if / if / br_table")
    call_fuel: int = Field(60, ge=0, le=1_000, description="per function entered (a call)")
    load_fuel: int = Field(8, ge=0, le=1_000, description="per memory load (a cache miss)")
    divide_fuel: int = Field(64, ge=0, le=1_000,
                             description="per integer div / rem, float div / sqrt")
    execution: int = Field(1_410_000, ge=0, le=MAX_PRICE,
                           description="per execution: a warm instance, the call, the result")
    module_byte: int = Field(1_000, ge=0, le=MAX_PRICE,
                             description="per byte of the module, per execution (bringing it in)")
    trap: int = Field(5_490_000, ge=0, le=MAX_PRICE,
                      description="per execution that ends in a trap")
    trap_frame: int = Field(1_320, ge=0, le=MAX_PRICE,
                            description="per call frame on the stack when it traps (unwinding)")
    host_call: int = Field(14_600, ge=0, le=MAX_PRICE)
    byte_in: int = Field(2, ge=0, le=MAX_PRICE,
                         description="per byte copied from the host into wasm memory")
    byte_out: int = Field(2, ge=0, le=MAX_PRICE,
                          description="per byte copied from wasm memory to the host")
    storage_read: int = Field(99_000, ge=0, le=MAX_PRICE)
    storage_read_key: int = Field(17_400_000, ge=0, le=MAX_PRICE,
                                  description="per distinct key read from the state (read set)")
    storage_read_byte: int = Field(3, ge=0, le=MAX_PRICE)
    storage_write: int = Field(9_450, ge=0, le=MAX_PRICE)
    storage_write_byte: int = Field(23, ge=0, le=MAX_PRICE)
    event: int = Field(15_300, ge=0, le=MAX_PRICE)
    event_byte: int = Field(10, ge=0, le=MAX_PRICE)
    hash: int = Field(421_000, ge=0, le=MAX_PRICE, description="per sha256 / keccak256 call")
    hash_byte: int = Field(328, ge=0, le=MAX_PRICE)
    ed25519_verify: int = Field(11_300_000, ge=0, le=MAX_PRICE,
                                description="per ed25519_verify call")
    ed25519_byte: int = Field(570, ge=0, le=MAX_PRICE,
                              description="per byte of the message ed25519_verify checks")
    secp256k1_verify: int = Field(8_600_000, ge=0, le=MAX_PRICE,
                                  description="per secp256k1_verify call")
    secp256k1_recover: int = Field(8_500_000, ge=0, le=MAX_PRICE,
                                   description="per secp256k1_recover call")
    call: int = Field(9_000_000, ge=0, le=MAX_PRICE, description="per wes.call, before the "
                      "callee's own execution (priced as any) is charged")
    call_byte: int = Field(43, ge=0, le=MAX_PRICE,
                           description="per byte of a call's address, function and input")
    memory_page: int = Field(5_920_000, ge=0, le=MAX_PRICE,
                             description="per 64 KiB page, initial or grown, past the free ones")
    memory_free_pages: int = Field(4, ge=0, le=65_536,
                                   description="pages every execution has within its price")
    table_element: int = Field(100, ge=0, le=MAX_PRICE)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WESFARM_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    # Redis and the queue
    redis_url: str | None = Field(None, description="unset: localhost:6379, else embedded")
    key_prefix: str = Field("wesfarm", min_length=1, pattern=r"^[A-Za-z0-9_.:{}-]+$",
                            description="every key's; braces make a Redis Cluster hash "
                            "tag: '{shard1}' keeps a farm's keys in one slot")
    queue_name: str = Field("", description="the arq queue; empty: {key_prefix}:queue, so "
                            "two farms on one Redis never take each other's jobs")
    redis_patience_s: float = Field(60.0, ge=0, description="how long the producer retries "
                                    "Redis through an outage before giving up")
    result_ttl_s: int = Field(86_400, ge=0, description="how long a tx's Result stays in "
                              "Redis (0: forever); the farm's first write fixes from it how "
                              "long a tx id is written once ({prefix}:txpart:span)")
    fee_stream_max: int = Field(1_000_000, ge=0, description="fee records the fees stream "
                                "keeps, at least (0: all)")

    # worker
    executors: int = Field(default_factory=lambda: available_cpus(), gt=0, le=256,
                           description="executor subprocesses per worker (default: the CPUs "
                           "this process may use)")
    metrics_port: int = Field(9464, ge=0, le=65_535, description="0: no metrics endpoint")
    metrics_host: str = Field("0.0.0.0", min_length=1,
                              description="the address the metrics endpoint binds")
    max_jobs: int = Field(64, gt=0)
    poll_delay_s: float = Field(0.005, gt=0, le=5)
    job_timeout_s: float = Field(120.0, gt=0)
    lease_ms: int = Field(3_000, ge=300, description="a worker's lease on the jobs it runs: "
                          "renewed while it lives, lapsed soon after it dies")
    executor_grace_ms: int = Field(2_000, ge=0)
    executor_memory_mb: int = Field(2_048, ge=64)
    health_check_interval_s: float = Field(10.0, gt=0)
    batch_size: int = Field(256, gt=0, le=10_000, description="the most txs in one part "
                            "(one execute_batch job) of a block")
    parts_per_executor: int = Field(4, gt=0, le=64, description="the producer cuts a block "
                                    "into about this many parts per live executor")
    prefetch_txs: int = Field(64, gt=0, le=10_000, description="per live executor: txs a "
                              "worker claims beyond one job for each of its executors")

    # engine
    compiler: Literal["cranelift", "winch"] = "cranelift"
    opt_level: Literal["none", "speed", "speed_and_size"] = "speed"
    pooling_allocator: bool = True
    memory_keep_resident_kb: int = Field(
        256, ge=0, le=1_048_576,
        description="per pooled memory slot: bytes kept mapped and zeroed by memset on reuse",
    )
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "wesfarm")
    cache_secret: str | None = Field(None, description="artifact MAC key; unset: a host key file")
    compile_timeout_ms: int = Field(10_000, gt=0, description="the compile wall: time")
    compile_memory_mb: int = Field(2_048, ge=256, description="the compile wall: memory")
    module_cache_size: int = Field(64, gt=0)
    instance_pool_size: int = Field(8, ge=0)
    pooled_modules: int = Field(16, ge=0)
    epoch_tick_ms: int = Field(5, gt=0, le=1_000)
    default_timeout_ms: int = Field(2_000, gt=0)
    default_fee_limit: int = Field(200_000_000, gt=0)
    denied_capabilities: dict[str, list[str]] = Field(default_factory=dict)

    limits: PolicyLimits = Field(default_factory=PolicyLimits)  # type: ignore[arg-type]
    fees: FeePrices = Field(default_factory=FeePrices)  # type: ignore[arg-type]

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(REDIS_SCHEMES):
            raise ValueError(f"{url!r} has no scheme: write it as redis://{url} (or "
                             "rediss://, unix://)")
        return url

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if not self.queue_name:
            self.queue_name = f"{self.key_prefix}:queue"
        if self.default_timeout_ms > self.limits.max_timeout_ms:
            raise ValueError("default_timeout_ms exceeds limits.max_timeout_ms")
        if self.default_fee_limit > self.limits.max_fee_limit:
            raise ValueError("default_fee_limit exceeds limits.max_fee_limit")
        per_ms = self.limits.max_fee_per_timeout_ms
        if self.default_fee_limit > self.default_timeout_ms * per_ms:
            raise ValueError("default_fee_limit outlasts default_timeout_ms at "
                             "limits.max_fee_per_timeout_ms")
        if self.limits.max_fee_limit > self.limits.max_timeout_ms * per_ms:
            raise ValueError("limits.max_fee_limit outlasts limits.max_timeout_ms at "
                             "limits.max_fee_per_timeout_ms")
        if self.job_timeout_s * 1000 < self.limits.max_timeout_ms:
            raise ValueError("job_timeout_s must cover limits.max_timeout_ms")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("WESFARM_CONFIG_FILE")
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and file); raise SettingsError naming each bad setting
    (an unknown one with the valid names beside it)."""
    path = os.environ.get("WESFARM_CONFIG_FILE")
    if path and not Path(path).is_file():
        raise SettingsError(f"WESFARM_CONFIG_FILE: no such file: {path}")
    try:
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"WESFARM_CONFIG_FILE {path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            problem = f"{name}: {err['msg'].removeprefix('Value error, ')}"
            if err["type"] == "extra_forbidden":
                valid = _siblings(err["loc"])
                close = difflib.get_close_matches(str(err["loc"][-1]), valid, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                problem = f"{name}: not a setting ({hint}valid: {', '.join(valid)})"
            problems.append(problem)
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


def _siblings(loc: tuple[int | str, ...]) -> list[str]:
    """The settings valid where `loc` names an unknown one."""
    model: type[BaseModel] = Settings
    for part in loc[:-1]:
        annotation = model.model_fields[str(part)].annotation if part in model.model_fields \
            else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)
