"""Shared test helpers: paths, the fee schedule the engine's mechanics are tested under,
WAT contracts and engines (support/contracts.py), and real farms (support/farm.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "examples" / "contracts"

# The engine's mechanics are tested against one fixed schedule (the pre-calibration
# prices), so expected fees stay exact whatever the calibrated defaults become. conftest
# sets these (and TEST_ENV) for the test session, worker subprocesses included;
# tests/engine/test_fee_defaults.py checks the shipped defaults themselves.
TEST_FEES = {
    "version": "wes-fee-test", "instruction": 1, "execution": 0, "host_call": 200, "byte_in": 2,
    "byte_out": 2, "storage_read": 2_000, "storage_read_byte": 4, "storage_write": 5_000,
    "storage_write_byte": 40, "event": 500, "event_byte": 10, "hash_byte": 6,
    "memory_page": 5_000, "memory_free_pages": 0, "table_element": 10,
    "ed25519_verify": 30_000, "ed25519_byte": 7, "secp256k1_verify": 25_000,
    "secp256k1_recover": 27_000, "call": 3_000, "call_byte": 3,
    # priced in their own tests (tests/engine/test_metering.py)
    "loop_fuel": 0, "branch_fuel": 0, "call_fuel": 0, "module_byte": 0, "trap": 0,
    "trap_frame": 0, "storage_read_key": 0, "hash": 0, "load_fuel": 0, "divide_fuel": 0,
}
TEST_ENV = {
    **{f"WESFARM_FEES__{name.upper()}": str(price) for name, price in TEST_FEES.items()},
    "WESFARM_DEFAULT_FEE_LIMIT": "10000000",
    # The mechanics of timeouts are tested with spinning jobs: under the test schedule a
    # fee limit may outlast its timeout (tests/engine/test_metering.py checks the rule).
    "WESFARM_LIMITS__MAX_FEE_PER_TIMEOUT_MS": str(10**12),
    "WESFARM_LIMITS__MAX_FEE_LIMIT": str(10**12),
}


def contract_path(name: str) -> Path:
    return CONTRACTS / name / f"{name}.wasm"
