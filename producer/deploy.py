"""Deployment: validate in-process, run `init`, then bind the address atomically.

One Lua script stores the code (content-addressed, SET NX), binds the address only
if it is free, and writes `init`'s write set as the contract's first committed state
-- all or nothing, so no worker can ever see the address without its initial state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from engine.model import Context, Job, Result
from engine.state import MemoryCode, MemoryState
from producer import state_root
from producer.errors import DeployError
from producer.local_engine import LocalEngine
from worker.protocol import STATE_LUA, Keys, state_write

# KEYS: code, address, state, state seq, the state hashes' registry, the state root.
# ARGV: code, code hash, what init's writes add to the root ("" when nothing), then
# (key, write)* as protocol.state_write gives them. Returns {1} when the address was
# bound now, {0, hash already bound there} otherwise. State already under the address
# (a genesis write before the deploy) would make the delta wrong: the root is dropped
# then, and the next commit builds it again.
DEPLOY_LUA = STATE_LUA + """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local existing = redis.call('GET', KEYS[2])
if existing then return {0, existing} end
redis.call('SET', KEYS[2], ARGV[2])
if #ARGV > 3 then
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('DEL', KEYS[6]) end
  local packed = pack_version(redis.call('INCR', KEYS[4]))
  redis.call('SADD', KEYS[5], KEYS[3])
  for i = 4, #ARGV, 2 do apply_write(KEYS[3], ARGV[i], ARGV[i + 1], packed) end
  root_add(KEYS[6], ARGV[3])
end
return {1}
"""


@dataclass(frozen=True, slots=True)
class Deployment:
    address: str
    code_hash: str
    created: bool  # False: this very code was already deployed at this address
    precompiled: bool = False


def validate_and_init(engine: LocalEngine, code: bytes, address: str, deployer: str,
                      fee_limit: int) -> Result | None:
    """Validate; run `init` (if exported) against empty state. Raises ExecutionError or
    DeployError (init did not end `ok`). Blocking: run it in a thread."""
    info = engine.validate(code)
    if "init" not in info.entry_points:
        return None
    codes = MemoryCode()
    codes.deploy(address, code)
    job = Job(tx_id=f"deploy-init:{address}", contract=address, function="init",
              fee_limit=fee_limit, context=Context(caller=deployer))
    result = engine.run_init(job, MemoryState(), codes)
    if result.status != "ok":
        message = (result.error or {}).get("message", result.status)
        raise DeployError(result.status, [f"init failed: {message}"])
    return result


async def bind(redis: Redis, keys: Keys, code: bytes, code_hash: str, address: str,
               init: Result | None) -> bool:
    """Store code, bind address, write init state (atomically); True if bound now."""
    writes = sorted((init.write_set if init else {}).items())
    delta = state_root.moved((address, key, None, value) for key, value in writes)
    args: list[Any] = [code, code_hash, state_root.to_bytes(delta) if writes else b""]
    for key, value in writes:
        args += [key, state_write(value)]
    script = redis.register_script(DEPLOY_LUA)
    reply = await script(
        keys=[keys.code(code_hash), keys.address(address), keys.state(address), keys.state_seq,
              keys.contracts, keys.root],
        args=args,
    )
    if int(reply[0]) == 1:
        return True
    existing = reply[1].decode()
    if existing != code_hash:
        raise DeployError(
            "conflict",
            [f"address {address!r} already holds code {existing}; "
             "deployed code is immutable, pick another address"],
        )
    return False
