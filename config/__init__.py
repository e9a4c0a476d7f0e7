"""One settings object for every wesfarm process: environment and an optional TOML file."""

from config.settings import FeePrices, PolicyLimits, Settings, SettingsError, load_settings

__all__ = ["FeePrices", "PolicyLimits", "Settings", "SettingsError", "load_settings"]
