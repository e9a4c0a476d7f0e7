"""How state and code reach the engine: two small protocols and in-memory/JSON-file versions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Protocol


class StateView(Protocol):
    """Committed contract state: `(value, version)` or None when the key is absent."""

    def get(self, contract: str, key: bytes) -> tuple[bytes, int] | None: ...


class CodeSource(Protocol):
    """Deployed code: address -> code hash (sha256 hex) -> module bytes."""

    def code_hash(self, address: str) -> str | None: ...

    def code(self, code_hash: str) -> bytes | None: ...


class MemoryState:
    """A dict-backed StateView; `apply` commits a write set under a new version."""

    def __init__(self) -> None:
        self.data: dict[str, dict[bytes, tuple[bytes, int]]] = {}
        self.version = 0

    def get(self, contract: str, key: bytes) -> tuple[bytes, int] | None:
        return self.data.get(contract, {}).get(key)

    def apply(self, contract: str, write_set: dict[bytes, bytes | None]) -> int:
        self.version += 1
        slot = self.data.setdefault(contract, {})
        for key, value in sorted(write_set.items()):
            if value is None:
                slot.pop(key, None)
            else:
                slot[key] = (value, self.version)
        return self.version

    def load_json(self, path: Path) -> None:
        """`{"version": N, "contracts": {addr: {key_hex: [value_hex, version]}}}`."""
        raw = json.loads(path.read_text())
        self.version = int(raw.get("version", 0))
        self.data = {
            addr: {bytes.fromhex(k): (bytes.fromhex(v[0]), int(v[1])) for k, v in keys.items()}
            for addr, keys in raw.get("contracts", {}).items()
        }

    def save_json(self, path: Path) -> None:
        contracts = {
            addr: {k.hex(): [v.hex(), ver] for k, (v, ver) in sorted(keys.items())}
            for addr, keys in sorted(self.data.items())
        }
        path.write_text(json.dumps({"version": self.version, "contracts": contracts}, indent=1))


class MemoryCode:
    """A dict-backed CodeSource."""

    def __init__(self) -> None:
        self.addresses: dict[str, str] = {}
        self.modules: dict[str, bytes] = {}

    def code_hash(self, address: str) -> str | None:
        return self.addresses.get(address)

    def code(self, code_hash: str) -> bytes | None:
        return self.modules.get(code_hash)

    def deploy(self, address: str, code: bytes) -> str:
        digest = hashlib.sha256(code).hexdigest()
        self.modules[digest] = code
        self.addresses[address] = digest
        return digest
