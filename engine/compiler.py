"""Engine configuration (exactly ABI 1's feature set), its fingerprint, and the artifact cache.

Artifacts are content-addressed by sha256(code) + fingerprint. `Module.deserialize`
runs native code, so an artifact is only loaded after its keyed BLAKE2b tag (a host
secret the artifact does not carry) verifies; anything else is refused and recompiled.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import json
import os
import platform
import re
import secrets
import time
from pathlib import Path
from typing import Any, TypeGuard

import wasmtime

from config import Settings
from engine import raw
from engine.abi import ABI_VERSION
from engine.errors import ExecutionError, InvalidJob, Rejected
from engine.instrument import INSTRUMENTATION

WASMTIME_VERSION = importlib.metadata.version("wasmtime")
TAG_BYTES = 32
PAGE = 65_536


def engine_knobs(settings: Settings) -> dict[str, Any]:
    """Every knob that changes compiled code or results: the fingerprint's input."""
    return {
        "wasmtime": WASMTIME_VERSION,
        # Native frame sizes decide where deep recursion hits max_wasm_stack (and how much
        # fuel was spent by then): the result depends on the compiled code's target too.
        "arch": platform.machine(),
        "compiler": settings.compiler,
        "opt_level": settings.opt_level,
        "pooling": settings.pooling_allocator,
        "memory_reservation": "wasmtime-default",
        "memory_may_move": False,
        "max_wasm_stack": settings.limits.max_wasm_stack_bytes,
        "max_memory_pages": settings.limits.max_memory_pages,
        # Every price, not just the label: a price changed under the same version gives
        # other fees, so another fingerprint. The instrumentation's rules are prices too.
        "fee_schedule": settings.fees.model_dump(),
        "instrumentation": INSTRUMENTATION,
        # A cached artifact skips the policy check, so the limits it passed are part of it;
        # they, and who may do what, decide results too.
        "limits": settings.limits.model_dump(),
        "denied_capabilities": {address: sorted(caps) for address, caps
                                in sorted(settings.denied_capabilities.items())},
        "features": "mvp+bulk-memory+multi-value+sign-ext+mutable-globals+sat-float-to-int",
        "nan_canonicalization": True,
        "abi": ABI_VERSION,
    }


def fingerprint(settings: Settings) -> str:
    text = json.dumps(engine_knobs(settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def build_config(settings: Settings) -> wasmtime.Config:
    cfg = wasmtime.Config()
    # Must precede disabling reference types: wasmtime panics (killing the process)
    # when component-model-async is left on without them.
    raw.bindings.wasmtime_config_wasm_component_model_async_set(cfg.ptr(), False)
    cfg.consume_fuel = True
    cfg.epoch_interruption = True
    cfg.cranelift_nan_canonicalization = True
    for feature in (
        "wasm_threads", "wasm_simd", "wasm_relaxed_simd", "wasm_memory64", "wasm_multi_memory",
        "wasm_tail_call", "wasm_gc", "wasm_exceptions", "wasm_reference_types",
        "wasm_function_references", "wasm_component_model", "wasm_wide_arithmetic",
        "wasm_custom_page_sizes", "wasm_stack_switching", "shared_memory",
    ):
        setattr(cfg, feature, False)
    cfg.wasm_bulk_memory = True
    cfg.wasm_multi_value = True
    cfg.max_wasm_stack = settings.limits.max_wasm_stack_bytes
    cfg.cranelift_opt_level = settings.opt_level
    cfg.memory_may_move = False  # host functions cache the linear memory's base address
    cfg.parallel_compilation = True  # executors are spawned, never forked
    if settings.compiler == "winch":
        raw.config_strategy_set(cfg.ptr(), raw.STRATEGY_WINCH)
    if settings.pooling_allocator:
        _pooling(cfg, settings)
    return cfg


def pool_slots(settings: Settings) -> int:
    """Linear-memory slots of the pooling allocator: warm stores hold up to
    instance_pool_size instances each; twice the warm count leaves room for used-but-not-
    yet-freed siblings (the pool retries after a purge)."""
    return 2 * settings.instance_pool_size * max(settings.pooled_modules, 1) + 64


def pool_memory_bytes(settings: Settings) -> int:
    """The most linear memory the pool can ever map read-write: every slot at its size."""
    return pool_slots(settings) * settings.limits.max_memory_pages * PAGE


def _pooling(cfg: wasmtime.Config, settings: Settings) -> None:
    """The pooling allocator: instantiation from pre-reserved slots (docs/HOT_PATH.md)."""
    b = raw.bindings
    slots = pool_slots(settings)
    memory_bytes = settings.limits.max_memory_pages * PAGE
    pool = b.wasmtime_pooling_allocation_config_new()
    b.wasmtime_pooling_allocation_config_total_core_instances_set(pool, slots)
    b.wasmtime_pooling_allocation_config_total_memories_set(pool, slots)
    b.wasmtime_pooling_allocation_config_total_tables_set(pool, slots)
    # Stacks from the pool serve async fibers only; this engine runs synchronously.
    b.wasmtime_pooling_allocation_config_total_stacks_set(pool, 1)
    b.wasmtime_pooling_allocation_config_max_memory_size_set(pool, memory_bytes)
    b.wasmtime_pooling_allocation_config_table_elements_set(
        pool, max(settings.limits.max_table_elements, 1)
    )
    b.wasmtime_pooling_allocation_config_max_memories_per_module_set(pool, 1)
    b.wasmtime_pooling_allocation_config_max_tables_per_module_set(pool, 1)
    # A freed slot's first KiBs are zeroed with memset and stay mapped instead of being
    # madvised away: the next instance then takes no page fault on its stack and data
    # (a fault less per small contract). Reset memory is zero either way. The
    # calibrated schedule prices these pages into every execution (memory_free_pages).
    b.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(
        pool, settings.memory_keep_resident_kb * 1024
    )
    b.wasmtime_pooling_allocation_strategy_set(cfg.ptr(), pool)
    b.wasmtime_pooling_allocation_config_delete(pool)


def compile_module(engine: wasmtime.Engine, code: bytes) -> wasmtime.Module:
    """Compile; a disabled feature is `rejected`, anything else malformed is `invalid`."""
    try:
        return wasmtime.Module(engine, code)
    except wasmtime.WasmtimeError as exc:
        raise _refusal(exc) from None


def validate_module(engine: wasmtime.Engine, code: bytes) -> None:
    """wasmtime's validation alone (linear time, no compile), as compile_module refuses.
    Run on the module as deployed, before anything reads or rewrites it: what the engine
    then sees is well-formed wasm, every index in range."""
    try:
        wasmtime.Module.validate(engine, code)
    except wasmtime.WasmtimeError as exc:
        raise _refusal(exc) from None


def _refusal(exc: wasmtime.WasmtimeError) -> ExecutionError:
    text = str(exc)
    detail = " ".join(line.strip() for line in text.splitlines() if line.strip())[:400]
    if "not enabled" in text or "support is not" in text or "disabled" in text:
        return Rejected(f"module uses a feature ABI 1 does not allow: {detail}", "feature")
    return InvalidJob(f"module does not validate: {detail}", "bad_module")


_CODE_HASH = re.compile(r"[0-9a-f]{64}")


def is_code_hash(text: str | None) -> TypeGuard[str]:
    """Whether `text` is a code hash as deploy writes it: sha256, 64 lowercase hex digits."""
    return text is not None and _CODE_HASH.fullmatch(text) is not None


class ArtifactCache:
    """Compiled artifacts on disk, shared by every process of this host, tag-verified."""

    def __init__(self, directory: Path, fingerprint: str, secret: str | None) -> None:
        self.dir = directory / "artifacts" / fingerprint
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.key = secret.encode() if secret else _host_secret(directory)
        self.fingerprint = fingerprint

    def _tag(self, code_hash: str, artifact: bytes) -> bytes:
        mac = hashlib.blake2b(digest_size=TAG_BYTES, key=self.key[:64])
        mac.update(f"{self.fingerprint}:{code_hash}:".encode())
        mac.update(artifact)
        return mac.digest()

    def path(self, code_hash: str) -> Path:
        if not is_code_hash(code_hash):  # it names a file: never anything but a sha256
            raise ValueError(f"not a code hash: {code_hash[:80]!r}")
        return self.dir / f"{code_hash}.cwasm"

    def load(self, code_hash: str) -> tuple[bytes, bytes] | None:
        """(metadata, artifact) once the tag verifies; None when absent or tampered (then
        the file is removed, so the caller recompiles and rewrites it)."""
        try:
            blob = self.path(code_hash).read_bytes()
        except FileNotFoundError:
            return None
        tag, body = blob[:TAG_BYTES], blob[TAG_BYTES:]
        if len(tag) == TAG_BYTES and hmac.compare_digest(tag, self._tag(code_hash, body)):
            size = int.from_bytes(body[:4], "little")
            return body[4 : 4 + size], body[4 + size :]
        self.path(code_hash).unlink(missing_ok=True)
        return None

    def store(self, code_hash: str, metadata: bytes, artifact: bytes) -> None:
        body = len(metadata).to_bytes(4, "little") + metadata + artifact
        final = self.path(code_hash)
        tmp = final.with_suffix(f".{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(self._tag(code_hash, body))
            out.write(body)
        os.replace(tmp, final)


def _host_secret(directory: Path) -> bytes:
    """A 32-byte key only this host's user can read, created once."""
    path = directory / "host.key"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        info = path.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise RuntimeError(f"{path} is readable or owned by others (mode "
                               f"{info.st_mode & 0o777:o}): refusing it as the artifact key; "
                               "remove it or set cache_secret") from None
        for _ in range(100):  # another process may be writing it right now
            key = path.read_bytes()
            if len(key) == 32:
                return key
            time.sleep(0.01)
        raise RuntimeError(f"{path} is not a 32-byte host key") from None
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key
