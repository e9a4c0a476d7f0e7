"""The example contracts in examples/contracts/.

Always (no toolchain needed): each checked-in .wasm compiles under a wasmtime
config with every feature ABI 1 rejects switched off, imports only ABI functions
from module "wes" with the ABI's types, has no start function, exports `memory`,
and exports its entry points (and nothing else) as () -> ().

Per toolchain, when present (skipped otherwise, naming what is missing):
build.sh rebuilds the contract into a temporary directory and the result is
byte-identical to the checked-in file.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime
from wasmtime import _ffi as wasmtime_ffi

from engine.abi import ABI

pytestmark = pytest.mark.integration  # subprocesses

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "examples" / "contracts"
BUILD_SH = CONTRACTS / "build.sh"

ENTRY_POINTS = {
    "counter": ["init", "incr", "get"],
    "token": ["mint", "transfer", "balance_of", "total_supply"],
    "hello_as": ["greet", "sum_f64"],
    "notary": ["post_ed25519", "post_secp256k1", "post_eth", "nonce", "message"],
    "escrow": ["deposit", "release", "credit_of"],
}

# Toolchain versions the checked-in files were built with; another version may
# emit other (equally valid) bytes, so the byte comparison is skipped then.
PINNED_WASMTIME = "50.0.1"
PINNED_CLANG = "14.0.6"
PINNED_ASC = "0.28.20"

# The ABI's functions: name -> (params, results), from the engine's one table
ABI_FUNCTIONS: dict[str, tuple[list[str], list[str]]] = {
    name: (list(fn.params), list(fn.results)) for name, fn in ABI.items()}
SDK = CONTRACTS / "sdk"

DISABLED_FEATURES = (
    "wasm_reference_types",
    "wasm_simd",
    "wasm_relaxed_simd",
    "wasm_threads",
    "wasm_multi_memory",
    "wasm_memory64",
    "wasm_tail_call",
    "wasm_gc",
    "wasm_function_references",
    "wasm_exceptions",
    "wasm_stack_switching",
    "wasm_wide_arithmetic",
    "wasm_custom_page_sizes",
)


def abi_engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    # wasmtime 50 enables component-model-async by default, and it requires
    # reference types: with reference types off and it on, Engine() panics and
    # aborts the process. Switch it off first.
    wasmtime_ffi.wasmtime_config_wasm_component_model_async_set(config.ptr(), False)
    for feature in DISABLED_FEATURES:
        setattr(config, feature, False)
    config.cranelift_nan_canonicalization = True
    return wasmtime.Engine(config)


def wasm_path(name: str) -> Path:
    return CONTRACTS / name / f"{name}.wasm"


def section_ids(wasm: bytes) -> list[int]:
    """The ids of the module's sections, in order (0 = custom, 8 = start)."""
    assert wasm[:8] == b"\0asm\x01\0\0\0", "not a core wasm module, version 1"
    ids, i = [], 8
    while i < len(wasm):
        ids.append(wasm[i])
        size, shift, i = 0, 0, i + 1
        while True:
            byte = wasm[i]
            i += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        i += size
    assert i == len(wasm), "truncated section"
    return ids


def type_names(types: list[wasmtime.ValType]) -> list[str]:
    return [str(t) for t in types]


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    return abi_engine()


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_checked_in_wasm_fits_abi(engine: wasmtime.Engine, name: str) -> None:
    wasm = wasm_path(name).read_bytes()
    module = wasmtime.Module(engine, wasm)  # compiling validates

    assert 8 not in section_ids(wasm), f"{name}: has a start function"

    for imp in module.imports:
        assert imp.module == "wes", f"{name}: import {imp.module}.{imp.name} is not from 'wes'"
        assert imp.name in ABI_FUNCTIONS, f"{name}: wes.{imp.name} is not an ABI function"
        ty = imp.type
        assert isinstance(ty, wasmtime.FuncType), f"{name}: wes.{imp.name} is not a function"
        params, results = ABI_FUNCTIONS[imp.name]
        assert (type_names(ty.params), type_names(ty.results)) == (params, results), (
            f"{name}: wes.{imp.name} has the wrong type"
        )

    exports = {exp.name: exp.type for exp in module.exports}
    assert isinstance(exports.get("memory"), wasmtime.MemoryType), f"{name}: no memory export"
    missing = [fn for fn in ENTRY_POINTS[name] if fn not in exports]
    assert not missing, f"{name}: entry points not exported: {missing}"
    for export_name, ty in exports.items():
        if export_name == "memory":
            continue
        assert isinstance(ty, wasmtime.FuncType), f"{name}: export {export_name} is not a function"
        assert not ty.params and not ty.results, f"{name}: {export_name} is not () -> ()"
    assert sorted(exports) == sorted([*ENTRY_POINTS[name], "memory"]), (
        f"{name}: unexpected exports {sorted(exports)}"
    )


def test_the_sdk_declares_the_whole_abi() -> None:
    """sdk/wes.h and sdk/wes.ts declare every function of the table, with as many
    parameters as the table gives."""
    want = {name: len(fn.params) for name, fn in ABI.items()}
    header = (SDK / "wes.h").read_text()
    c_decls = re.findall(r"WES_IMPORT\((\w+)\)[^;]*?\(([^()]*)\);", header, re.S)
    assert {n: 0 if args.strip() == "void" else args.count(",") + 1 for n, args in c_decls} == want
    module = (SDK / "wes.ts").read_text()
    ts_decls = re.findall(r'@external\("wes", "(\w+)"\)\s*export declare function \w+'
                          r"\(([^()]*)\)", module)
    assert {n: args.count(":") for n, args in ts_decls} == want


def test_abi_engine_rejects_reference_types(engine: wasmtime.Engine) -> None:
    """The config above really switches reference types off (so the check means something)."""
    wat = "(module (func (result i32) ref.null func ref.is_null))"
    with pytest.raises(wasmtime.WasmtimeError):
        wasmtime.Module(engine, bytes(wasmtime.wat2wasm(wat)))


# ---- rebuild checks ---------------------------------------------------------


def tool_version(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def missing_toolchain(name: str) -> str | None:
    """Why `name` cannot be rebuilt here (None when it can)."""
    if shutil.which("bash") is None:
        return "bash not found"
    if name == "counter":
        version = importlib.metadata.version("wasmtime")
        if version != PINNED_WASMTIME:
            return f"wasmtime {version} is not the pinned {PINNED_WASMTIME}"
        return None
    if name in ("token", "notary", "escrow"):
        if shutil.which("clang") is None:
            return "clang not found (apt-get install clang lld)"
        if shutil.which("wasm-ld") is None:
            return "wasm-ld not found (apt-get install lld)"
        version = tool_version(["clang", "--version"])
        if PINNED_CLANG not in version:
            return f"clang is {version!r}, not the pinned Debian clang {PINNED_CLANG}"
        return None
    if name == "hello_as":
        if shutil.which("node") is None:
            return "node not found"
        asc = CONTRACTS / "hello_as" / "node_modules" / ".bin" / "asc"
        if not asc.exists():
            return "assemblyscript (asc) not installed: cd examples/contracts/hello_as && npm ci"
        version = tool_version([str(asc), "--version"])
        if PINNED_ASC not in version:
            return f"asc is {version!r}, not the pinned {PINNED_ASC}"
        return None
    raise AssertionError(name)


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Run build.sh once into a temporary directory; (out dir, its output)."""
    out = tmp_path_factory.mktemp("contracts")
    env = dict(os.environ, WES_NO_INSTALL="1")
    # the Python running the tests has wasmtime; build.sh uses it for counter
    env.setdefault("PYTHON", sys.executable)
    proc = subprocess.run(
        ["bash", str(BUILD_SH), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"build.sh failed:\n{log}"
    return out, log


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_rebuild_is_byte_identical(name: str, request: pytest.FixtureRequest) -> None:
    why = missing_toolchain(name)
    if why is not None:
        pytest.skip(f"cannot rebuild {name}: {why}")
    out, log = request.getfixturevalue("rebuilt")
    built = out / name / f"{name}.wasm"
    assert built.exists(), f"build.sh did not build {name}:\n{log}"
    assert built.read_bytes() == wasm_path(name).read_bytes(), (
        f"{name}: rebuilt {name}.wasm differs from the checked-in file; "
        f"run examples/contracts/build.sh and check in the result\n{log}"
    )
