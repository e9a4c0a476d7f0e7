"""One ABI table (engine/abi.py): the C host is checked against it when it loads, and the
Python reference host implements exactly its functions."""

from __future__ import annotations

import pytest

from engine import raw
from engine.abi import ABI, CAPABILITIES, HOOKS, check_native_table
from engine.fees import CATEGORIES
from engine.host import IMPLEMENTATIONS

needs_native = pytest.mark.skipif(raw.native is None, reason="engine._native is not built")


def test_the_reference_host_implements_exactly_the_abi() -> None:
    assert set(IMPLEMENTATIONS) == set(ABI) | set(HOOKS)


@needs_native
def test_the_c_host_states_exactly_the_abi() -> None:
    assert raw.native is not None
    check_native_table(raw.native.FUNCTIONS, raw.native.CAPABILITIES)
    assert raw.native.CATEGORIES == CATEGORIES
    assert {name: row[1:] for name, row in raw.native.FUNCTIONS.items()} == {
        name: (spec.signature, spec.capability) for name, spec in {**ABI, **HOOKS}.items()}


def _table() -> dict[str, tuple[int, str, str]]:
    return {name: (0, spec.signature, spec.capability)
            for name, spec in {**ABI, **HOOKS}.items()}


@pytest.mark.parametrize(("change", "named"), [
    (lambda t, c: t.pop("sha256"), "wes.sha256 is missing from the C host"),
    (lambda t, c: t.__setitem__("extra", (0, "->", "io")), "wes.extra is only in the C host"),
    (lambda t, c: t.__setitem__("storage_read", (0, "iiii->", "state-read")),
     "wes.storage_read: C says iiii-> (state-read)"),
    (lambda t, c: t.__setitem__("log", (0, "ii->", "io")), "wes.log: C says ii-> (io)"),
    (lambda t, c: c.reverse(), "capability bits"),
])
def test_a_c_table_that_disagrees_is_refused_naming_the_difference(change: object,
                                                                   named: str) -> None:
    table, caps = _table(), list(CAPABILITIES)
    change(table, caps)  # type: ignore[operator]
    with pytest.raises(RuntimeError, match=named.replace("(", r"\(").replace(")", r"\)")):
        check_native_table(table, tuple(caps))
