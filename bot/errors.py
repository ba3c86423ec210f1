"""Errors shown to users by every adapter; tiny so the CLI can import it at start."""


class ConfigError(ValueError):
    """A setting has a wrong value. The message names the variable."""
