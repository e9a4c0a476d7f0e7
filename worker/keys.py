"""The Redis layout every wesfarm process shares: a public contract, not a worker internal.

{p}:code:{sha256}        module bytes
{p}:addr:{address}       sha256 hex of the code deployed at address (immutable)
{p}:state:{address}      hash: key bytes -> msgpack [value bytes, version int]
{p}:state:seq            last committed version (INCR per committed tx)
{p}:result:{tx_id}       msgpack Result, written once (SET NX)
{p}:fees                 stream: one entry per tx id {tx_id, fee (msgpack)}
{p}:block:{height}       msgpack commit record of a block
{p}:block:{height}:applied  hash: tx id -> version its writes got (0: none); makes a
                         block commit resumable (producer/commit.py)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def code(self, code_hash: str) -> str:
        return f"{self.prefix}:code:{code_hash}"

    def address(self, address: str) -> str:
        return f"{self.prefix}:addr:{address}"

    def state(self, address: str) -> str:
        return f"{self.prefix}:state:{address}"

    @property
    def state_seq(self) -> str:
        return f"{self.prefix}:state:seq"

    def result(self, tx_id: str) -> str:
        return f"{self.prefix}:result:{tx_id}"

    @property
    def fees(self) -> str:
        return f"{self.prefix}:fees"

    def block(self, height: int) -> str:
        return f"{self.prefix}:block:{height}"

    def block_applied(self, height: int) -> str:
        return f"{self.prefix}:block:{height}:applied"
