"""One settings object for every wesfarm process: environment and an optional TOML file."""

from config.settings import (
    DEFAULT_REDIS_URL,
    FeePrices,
    PolicyLimits,
    Settings,
    SettingsError,
    load_settings,
)

__all__ = ["DEFAULT_REDIS_URL", "FeePrices", "PolicyLimits", "Settings", "SettingsError",
           "load_settings"]
