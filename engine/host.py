"""The reference implementation of every `wes.*` function of engine/abi.py, in Python.

It runs on the public-API path; engine/native/abi.c is the same functions in C, run by
the raw path, and the tests hold the two equal.
Each function takes the ExecutionState and its arguments as unsigned Python ints and
charges before it does its work (the trampoline has already charged the call's base
price and the instructions run before it). It raises ExecutionError subclasses; the
trampoline turns them into traps and keeps them for the result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from Crypto.Hash import keccak

from engine import signatures
from engine.abi import ABI, HOOKS
from engine.errors import ContractTrap, Reverted
from engine.execution_state import PAGE, ExecutionState
from engine.model import MAX_ADDRESS_BYTES, MAX_FUNCTION_BYTES


def _out(ex: ExecutionState, n: int, name: str) -> None:
    """Charge n bytes leaving wasm memory for the host."""
    ex.meter.consume(n * ex.schedule.byte_out, "io_bytes", f"wes.{name}")


def _in(ex: ExecutionState, n: int, name: str) -> None:
    """Charge n bytes the host copies into wasm memory."""
    ex.meter.consume(n * ex.schedule.byte_in, "io_bytes", f"wes.{name}")


def _check_len(n: int, limit: int, what: str) -> None:
    if n > limit:
        raise ContractTrap(f"{what} is {n} bytes, limit {limit}", "limit")


def input_size(ex: ExecutionState) -> int:
    return len(ex.input)


def input_read(ex: ExecutionState, dst: int) -> None:
    _in(ex, len(ex.input), "input_read")
    ex.write(dst, ex.input, "input_read")


def return_data(ex: ExecutionState, ptr: int, length: int) -> None:
    _check_len(length, ex.limits.max_return_bytes, "wes.return_data: return data")
    _out(ex, length, "return_data")
    ex.return_data = ex.read(ptr, length, "return_data")


def revert(ex: ExecutionState, ptr: int, length: int) -> None:
    _check_len(length, ex.limits.max_return_bytes, "wes.revert: message")
    _out(ex, length, "revert")
    raise Reverted(ex.read(ptr, length, "revert"))


def log(ex: ExecutionState, ptr: int, length: int) -> None:
    _out(ex, length, "log")
    line = ex.read(ptr, length, "log")
    # Bounded, deterministically: lines past the count are dropped, long lines cut.
    if len(ex.logs) < ex.limits.max_logs:
        ex.logs.append(line[: ex.limits.max_log_bytes])


def emit_event(ex: ExecutionState, topic_ptr: int, topic_len: int, data_ptr: int,
               data_len: int) -> None:
    _check_len(topic_len, ex.limits.max_event_topic_bytes, "wes.emit_event: topic")
    _check_len(data_len, ex.limits.max_event_data_bytes, "wes.emit_event: data")
    if len(ex.events) >= ex.limits.max_events:
        raise ContractTrap(f"wes.emit_event: over {ex.limits.max_events} events", "limit")
    ex.meter.consume(ex.schedule.event + (topic_len + data_len) * ex.schedule.event_byte,
                     "events", "wes.emit_event")
    ex.events.append((ex.read(topic_ptr, topic_len, "emit_event"),
                      ex.read(data_ptr, data_len, "emit_event")))


def storage_read(ex: ExecutionState, key_ptr: int, key_len: int, dst: int, dst_cap: int) -> int:
    _check_len(key_len, ex.limits.max_key_bytes, "wes.storage_read: key")
    sched = ex.schedule
    ex.meter.consume(sched.storage_read + key_len * sched.storage_read_byte, "storage_read",
                     "wes.storage_read")
    value = ex.storage_get(ex.read(key_ptr, key_len, "storage_read"))
    if value is None:
        return 0xFFFFFFFF  # -1 as an i32
    copied = value[:dst_cap]
    ex.meter.consume(len(copied) * sched.storage_read_byte, "storage_read", "wes.storage_read")
    if copied:
        ex.write(dst, copied, "storage_read")
    return len(value)


def storage_write(ex: ExecutionState, key_ptr: int, key_len: int, val_ptr: int,
                  val_len: int) -> None:
    _check_len(key_len, ex.limits.max_key_bytes, "wes.storage_write: key")
    _check_len(val_len, ex.limits.max_value_bytes, "wes.storage_write: value")
    sched = ex.schedule
    ex.meter.consume(sched.storage_write + (key_len + val_len) * sched.storage_write_byte,
                     "storage_write", "wes.storage_write")
    key = ex.read(key_ptr, key_len, "storage_write")
    ex.buffer_write(key, ex.read(val_ptr, val_len, "storage_write"), "wes.storage_write")


def storage_remove(ex: ExecutionState, key_ptr: int, key_len: int) -> None:
    _check_len(key_len, ex.limits.max_key_bytes, "wes.storage_remove: key")
    sched = ex.schedule
    ex.meter.consume(sched.storage_write + key_len * sched.storage_write_byte,
                     "storage_write", "wes.storage_remove")
    ex.buffer_write(ex.read(key_ptr, key_len, "storage_remove"), None, "wes.storage_remove")


def caller(ex: ExecutionState, dst: int) -> int:
    _in(ex, len(ex.caller), "caller")
    ex.write(dst, ex.caller, "caller")
    return len(ex.caller)


def self_address(ex: ExecutionState, dst: int) -> int:
    _in(ex, len(ex.address), "self_address")
    ex.write(dst, ex.address, "self_address")
    return len(ex.address)


def block_height(ex: ExecutionState) -> int:
    return ex.job.context.block_height & 0xFFFFFFFFFFFFFFFF


def block_time(ex: ExecutionState) -> int:
    return ex.job.context.block_time & 0xFFFFFFFFFFFFFFFF


def fee_left(ex: ExecutionState) -> int:
    return ex.meter.left


def _hash(ex: ExecutionState, name: str, ptr: int, length: int, dst: int,
          digest: Callable[[bytes], bytes]) -> None:
    ex.meter.consume(ex.schedule.hash + length * ex.schedule.hash_byte, "hashing", f"wes.{name}")
    ex.write(dst, digest(ex.read(ptr, length, name)), name)


def sha256_digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def keccak256_digest(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()  # type: ignore[no-any-return]


def sha256(ex: ExecutionState, ptr: int, length: int, dst: int) -> None:
    _hash(ex, "sha256", ptr, length, dst, sha256_digest)


def keccak256(ex: ExecutionState, ptr: int, length: int, dst: int) -> None:
    _hash(ex, "keccak256", ptr, length, dst, keccak256_digest)


def ed25519_verify(ex: ExecutionState, sig_ptr: int, msg_ptr: int, msg_len: int,
                   pk_ptr: int) -> int:
    sched = ex.schedule
    ex.meter.consume(sched.ed25519_verify + msg_len * sched.ed25519_byte, "signatures",
                     "wes.ed25519_verify")
    signature = ex.read(sig_ptr, signatures.ED25519_SIGNATURE, "ed25519_verify")
    message = ex.read(msg_ptr, msg_len, "ed25519_verify")
    key = ex.read(pk_ptr, signatures.ED25519_KEY, "ed25519_verify")
    return int(signatures.ed25519_verify(signature, message, key))


def _charged_hash_and_sig(ex: ExecutionState, name: str, price: int, hash_ptr: int,
                          sig_ptr: int) -> tuple[bytes, bytes]:
    ex.meter.consume(price, "signatures", f"wes.{name}")
    return (ex.read(hash_ptr, signatures.SECP256K1_HASH, name),
            ex.read(sig_ptr, signatures.SECP256K1_SIGNATURE, name))


def secp256k1_verify(ex: ExecutionState, hash_ptr: int, sig_ptr: int, pk_ptr: int,
                     pk_len: int) -> int:
    digest, signature = _charged_hash_and_sig(ex, "secp256k1_verify",
                                              ex.schedule.secp256k1_verify, hash_ptr, sig_ptr)
    if pk_len not in signatures.SECP256K1_KEY_LENGTHS:
        return 0  # no key of that length: nothing more is read
    key = ex.read(pk_ptr, pk_len, "secp256k1_verify")
    return int(signatures.secp256k1_verify(digest, signature, key))


def secp256k1_recover(ex: ExecutionState, hash_ptr: int, sig_ptr: int, recovery_id: int,
                      dst: int) -> int:
    digest, signature = _charged_hash_and_sig(ex, "secp256k1_recover",
                                              ex.schedule.secp256k1_recover, hash_ptr, sig_ptr)
    key = signatures.secp256k1_recover(digest, signature, recovery_id)
    if key is None:
        return 0
    ex.write(dst, key, "secp256k1_recover")
    return 1


def call(ex: ExecutionState, addr_ptr: int, addr_len: int, fn_ptr: int, fn_len: int,
         in_ptr: int, in_len: int, fee: int) -> int:
    _check_len(addr_len, MAX_ADDRESS_BYTES, "wes.call: address")
    _check_len(fn_len, MAX_FUNCTION_BYTES, "wes.call: function name")
    _check_len(in_len, ex.limits.max_input_bytes, "wes.call: input")
    sched = ex.schedule
    ex.meter.consume(sched.call + (addr_len + fn_len + in_len) * sched.call_byte, "calls",
                     "wes.call")
    address = ex.read(addr_ptr, addr_len, "call")
    function = ex.read(fn_ptr, fn_len, "call")
    data = ex.read(in_ptr, in_len, "call")
    signed_fee = fee - (1 << 64) if fee >= 1 << 63 else fee
    status, ex.last_result = ex.calls.call(ex, address, function, data, signed_fee)
    ex.cap_fuel()
    return int(status)


def result_size(ex: ExecutionState) -> int:
    return len(ex.last_result)


def result_read(ex: ExecutionState, dst: int) -> None:
    _in(ex, len(ex.last_result), "result_read")
    ex.write(dst, ex.last_result, "result_read")


def memory_grow(ex: ExecutionState, delta: int) -> int:
    """The instrumentation's `memory.grow`: the new pages are charged before they exist."""
    pages = ex.memory_pages()
    if pages + delta > ex.max_pages:
        return 0xFFFFFFFF  # -1: past the maximum, nothing grows and nothing is charged
    ex.charge_growth((pages + delta) * PAGE)
    return ex.grow(delta)


IMPLEMENTATIONS: dict[str, Callable[..., int | None]] = {
    fn.__name__: fn
    for fn in (input_size, input_read, return_data, revert, log, emit_event, storage_read,
               storage_write, storage_remove, caller, self_address, block_height, block_time,
               fee_left, sha256, keccak256, ed25519_verify, secp256k1_verify,
               secp256k1_recover, call, result_size, result_read, memory_grow)
}
if set(IMPLEMENTATIONS) != set(ABI) | set(HOOKS):
    raise RuntimeError(f"engine/host.py implements {sorted(IMPLEMENTATIONS)}, "
                       f"engine/abi.py declares {sorted(ABI)} and hooks {sorted(HOOKS)}")
