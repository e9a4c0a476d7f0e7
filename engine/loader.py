"""Bringing code in: policy → wasmtime's validation → instrumentation → compile budget →
the compile wall → the verified artifact cache → a compiled contract, kept in an
in-process LRU.

The instrumented module is what is compiled and cached (under the original code's hash
and the engine fingerprint, which names the instrumentation and its rules).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import wasmtime

from config import Settings
from engine.budget import check_budget
from engine.compile_sandbox import CompileSandbox, CompileWall
from engine.compiler import ArtifactCache, validate_module
from engine.counters import EngineCounters
from engine.errors import InternalError, InvalidJob
from engine.instrument import Metering, instrument
from engine.model import ModuleInfo
from engine.policy import check_module
from engine.pool import CompiledContract
from engine.state import CodeSource

log = logging.getLogger("wesfarm.engine")


KNOWN_INFOS = 4_096


class ContractLoader:
    def __init__(self, settings: Settings, engine: wasmtime.Engine, linker: wasmtime.Linker,
                 fingerprint: str, counters: EngineCounters) -> None:
        self.settings = settings
        self.engine = engine
        self.linker = linker
        self.counters = counters
        self.metering = Metering.of(settings.fees)
        self.artifacts = ArtifactCache(settings.cache_dir, fingerprint, settings.cache_secret)
        self.sandbox = CompileSandbox.for_settings(settings)
        # What every contract loaded here is (entry points, size), kept past the compiled
        # LRU: a call can be refused or priced out before its callee is loaded again.
        self.infos: OrderedDict[str, ModuleInfo] = OrderedDict()
        self.compiled: OrderedDict[str, CompiledContract] = OrderedDict()

    def validate(self, code: bytes) -> ModuleInfo:
        """Policy, budget and a compile behind the wall (the artifact is kept); raise
        Rejected/InvalidJob naming the problem."""
        loaded = self.load(hashlib.sha256(code).hexdigest(), lambda: code)
        return loaded if isinstance(loaded, ModuleInfo) else loaded.info

    def contract(self, address: str, codes: CodeSource,
                 wanted: Callable[[ModuleInfo], bool] | None = None
                 ) -> CompiledContract | ModuleInfo:
        """The compiled contract deployed at `address` (InvalidJob when there is none). A
        compile that hits the wall here, after the deploy passed it, is this machine's
        trouble, not the contract's: an internal error, retried elsewhere. Only its
        ModuleInfo when it is not compiled here and `wanted` says the job cannot run it
        (no such entry point, or a fee that cannot bring it in): nothing is fetched or
        compiled for such a job when the info is known, nor compiled when it is not."""
        code_hash = codes.code_hash(address)
        if code_hash is None:
            raise InvalidJob(f"unknown contract {address!r}", "unknown_contract")
        contract = self.compiled.get(code_hash)
        if contract is not None:
            self.compiled.move_to_end(code_hash)
            self.counters.cache["memory_hit"] += 1
            return contract
        info = self.infos.get(code_hash)
        if wanted is not None and info is not None and not wanted(info):
            return info

        def fetch() -> bytes:
            code = codes.code(code_hash)
            if code is None:
                raise InvalidJob(f"code {code_hash} of contract {address!r} is missing",
                                 "unknown_contract")
            return code

        try:
            loaded = self.load(code_hash, fetch, wanted)
        except CompileWall as exc:
            raise InternalError(f"compiling contract {address!r} here: {exc.message}") from None
        info = loaded if isinstance(loaded, ModuleInfo) else loaded.info
        self.infos[code_hash] = info
        self.infos.move_to_end(code_hash)
        while len(self.infos) > KNOWN_INFOS:
            self.infos.popitem(last=False)
        return loaded

    def known(self, address: str, codes: CodeSource) -> ModuleInfo | None:
        """What the contract at `address` is, if this loader has loaded it before (no
        load, no fetch: None otherwise)."""
        code_hash = codes.code_hash(address)
        if code_hash is None:
            return None
        contract = self.compiled.get(code_hash)
        return contract.info if contract is not None else self.infos.get(code_hash)

    def instantiable(self, code_hash: str) -> ModuleInfo | None:
        """What the module is, if it is compiled here and instantiating it has not trapped
        (None otherwise: no load, no fetch)."""
        contract = self.compiled.get(code_hash)
        return None if contract is None or contract.instantiation_traps else contract.info

    def cached(self, code_hash: str) -> CompiledContract | None:
        """The module compiled here, or loaded now from the artifact cache when it holds
        it (no fetch, no compile: None otherwise)."""
        contract = self.compiled.get(code_hash)
        if contract is not None:
            return contract
        stored = self.artifacts.load(code_hash)
        if stored is None:
            return None
        try:
            info = ModuleInfo.from_bytes(stored[0])
            module = wasmtime.Module.deserialize(self.engine, stored[1])
        except (wasmtime.WasmtimeError, ValueError) as exc:
            # Verified but unusable (an engine setting the fingerprint missed): recompile.
            log.warning("artifact %s unusable, recompiling: %s", code_hash[:12], exc)
            return None
        self.counters.cache["disk_hit"] += 1
        return self._keep(code_hash, module, info)

    def load(self, code_hash: str, fetch: Callable[[], bytes],
             wanted: Callable[[ModuleInfo], bool] | None = None
             ) -> CompiledContract | ModuleInfo:
        contract = self.cached(code_hash)
        if contract is None:
            code = fetch()
            if hashlib.sha256(code).hexdigest() != code_hash:
                raise InvalidJob(f"code stored under {code_hash} does not hash to it",
                                 "bad_module")
            info = check_module(code, self.settings.limits)
            validate_module(self.engine, code)  # before the instrumenter reads the code
            if wanted is not None and not wanted(info):
                return info  # (valid: the verdict is the one a compiled module gives)
            started = time.perf_counter()
            instrumented = instrument(code, self.metering)
            check_budget(instrumented, self.settings.limits)
            artifact = self.sandbox.compile(instrumented)
            module = wasmtime.Module.deserialize(self.engine, artifact)
            self.counters.compile_seconds += time.perf_counter() - started
            self.artifacts.store(code_hash, info.to_bytes(), artifact)
            self.counters.cache["compiled"] += 1
            contract = self._keep(code_hash, module, info)
        return contract

    def _keep(self, code_hash: str, module: wasmtime.Module, info: ModuleInfo
              ) -> CompiledContract:
        contract = CompiledContract(code_hash, module, self.linker.instantiate_pre(module), info)
        self.compiled[code_hash] = contract
        while len(self.compiled) > self.settings.module_cache_size:
            self.compiled.popitem(last=False)
        return contract

    def clear(self) -> None:
        self.compiled.clear()
