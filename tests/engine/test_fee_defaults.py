"""The shipped (calibrated) fee schedule: real contracts run within the default limit.

Other tests pin the schedule in conftest.py; this one builds the defaults explicitly.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from config import FeePrices, SettingsError, load_settings
from config.settings import Settings
from engine import Context, Job, MemoryCode, MemoryState, WasmEngine
from tests.support import contract_path

TOKEN = contract_path("token")


def _defaults(cache_dir: Path) -> Settings:
    shipped = Settings.model_fields["default_fee_limit"].default
    return load_settings(cache_dir=cache_dir, fees=FeePrices(), default_fee_limit=shipped)


def test_a_token_transfer_fits_the_default_limit_under_the_shipped_schedule(
    tmp_path: Path,
) -> None:
    settings = _defaults(tmp_path)
    assert settings.fees.version != "wes-fee-test"
    engine = WasmEngine(settings)
    try:
        codes, state = MemoryCode(), MemoryState()
        codes.deploy("token", TOKEN.read_bytes())
        limit = settings.default_fee_limit
        mint = engine.execute(Job("m", "token", "mint", struct.pack("<Q", 50), limit,
                                  Context("alice")), state, codes)
        assert mint.status == "ok", mint.error
        state.apply("token", mint.write_set)
        transfer = engine.execute(Job("t", "token", "transfer", struct.pack("<Q", 5) + b"bob",
                                      limit, Context("alice")), state, codes)
        assert transfer.status == "ok", transfer.error
        fee = transfer.fee
        assert fee.schedule == settings.fees.version
        assert sum(fee.breakdown.values()) == fee.used <= limit
        # the calibrated prices make host calls and storage, not instructions, dominate
        assert fee.breakdown["host_calls"] > fee.breakdown["instructions"]
        assert fee.breakdown["storage_write"] >= 2 * settings.fees.storage_write
    finally:
        engine.shutdown()


def test_prices_and_limits_past_the_native_meter_range_are_refused() -> None:
    with pytest.raises(SettingsError, match=r"fees\.hash_byte"):
        load_settings(fees={"hash_byte": 10**9 + 1})
    with pytest.raises(SettingsError, match=r"limits\.max_fee_limit"):
        load_settings(limits={"max_fee_limit": 10**16})
