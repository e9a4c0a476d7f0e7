"""What the environment says beside the settings: `WESFARM_*` variables that are no
setting (a misspelling is otherwise silently ignored), and settings as they may be shown
(secrets masked)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

from config.settings import Settings

# Variables wesfarm reads that are not settings.
OTHER_VARIABLES = frozenset({
    "WESFARM_CONFIG_FILE", "WESFARM_TEST_REDIS_URL", "WESFARM_TEST_REDIS_SERVER",
    "WESFARM_TEST_HOOKS", "WESFARM_PROBE_SECRET", "WESFARM_BENCH_CACHE",
})
MASK = "***"


def _names(model: type[BaseModel], prefix: str) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        names.add(f"{prefix}{name.upper()}")
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names |= _names(field.annotation, f"{prefix}{name.upper()}__")
    return names


KNOWN = frozenset(_names(Settings, "WESFARM_")) | OTHER_VARIABLES


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """`WESFARM_*` variables that name no setting (case-insensitive, as the settings read
    them)."""
    return sorted(name for name in environ
                  if name.upper().startswith("WESFARM_") and name.upper() not in KNOWN)


def masked_url(url: str) -> str:
    """A Redis URL with its password (if any) masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def shown(settings: Settings) -> dict[str, Any]:
    """The settings as `wesfarm config` prints them: secrets masked."""
    out = settings.model_dump(mode="json")
    if out.get("cache_secret"):
        out["cache_secret"] = MASK
    if out.get("redis_url"):
        out["redis_url"] = masked_url(out["redis_url"])
    return out
