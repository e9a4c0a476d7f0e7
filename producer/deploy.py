"""Deployment: validate in-process, run `init`, then bind the address atomically.

One Lua script stores the code (content-addressed, SET NX), binds the address only
if it is free, and writes `init`'s write set as the contract's first committed state
-- all or nothing, so no worker can ever see the address without its initial state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.model import Result
from producer.commit import value_blob
from producer.model import DeployError

if TYPE_CHECKING:
    from producer.client import FarmClient

# KEYS: code, address, state, state seq. ARGV: code, code hash, then (key, blob)* as
# in COMMIT_LUA ("\0" remove, "\1" .. msgpack [value, minus the version]).
# Returns {1} when the address was bound now, {0, hash already bound there} otherwise.
DEPLOY_LUA = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local existing = redis.call('GET', KEYS[2])
if existing then return {0, existing} end
redis.call('SET', KEYS[2], ARGV[2])
if #ARGV > 2 then
  local packed = cmsgpack.pack(redis.call('INCR', KEYS[4]))
  for i = 3, #ARGV, 2 do
    local blob = ARGV[i + 1]
    if string.byte(blob, 1) == 0 then
      redis.call('HDEL', KEYS[3], ARGV[i])
    else
      redis.call('HSET', KEYS[3], ARGV[i], string.sub(blob, 2) .. packed)
    end
  end
end
return {1}
"""


def validate_and_init(farm: FarmClient, code: bytes, address: str, deployer: str) -> Result | None:
    """Validate; run `init` (if exported) against empty state. Raises ExecutionError or
    DeployError (init did not end `ok`). Blocking: run it in a thread."""
    from engine.state import MemoryCode, MemoryState

    info = farm.engine_call("validate", code)
    if "init" not in getattr(info, "entry_points", ()):
        return None
    codes = MemoryCode()
    codes.deploy(address, code)
    job = farm.make_job(address, "init", caller=deployer, tx_id=f"deploy-init:{address}")
    result: Result = farm.engine_call("execute", job, MemoryState(), codes)
    if result.status != "ok":
        message = (result.error or {}).get("message", result.status)
        raise DeployError(result.status, [f"init failed: {message}"])
    return result


async def bind(
    farm: FarmClient, code: bytes, code_hash: str, address: str, init: Result | None
) -> bool:
    """Store code, bind address, write init state (atomically); True if bound now."""
    keys = farm.keys
    args: list[Any] = [code, code_hash]
    for key, value in sorted((init.write_set if init else {}).items()):
        args += [key, value_blob(value)]
    script = farm.redis.register_script(DEPLOY_LUA)
    reply = await script(
        keys=[keys.code(code_hash), keys.address(address), keys.state(address), keys.state_seq],
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
