"""Where the configuration comes from: a YAML file, a git repository, or nothing (local).

``ConfigSource.current()`` is what the service consults on every request that needs
the configuration; it must stay cheap (no I/O on the hot path).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from diracx.core.config import Config, local_config
from diracx.core.exceptions import DiracxError
from diracx.core.settings import ServiceSettings


class ConfigError(DiracxError):
    """The configuration cannot be read or is not valid; the message says where."""


def parse_config(text: str, origin: str) -> Config:
    """A validated ``Config`` from YAML *text*; *origin* names it in error messages."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None
    try:
        return Config.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: not a valid DiracX configuration:\n{exc}") from None


class ConfigSource:
    """The configuration in force."""

    def __init__(self, config: Config) -> None:
        self._config = config

    def current(self) -> Config:
        return self._config


def open_config_source(settings: ServiceSettings) -> ConfigSource:
    if settings.config is None:
        return ConfigSource(local_config())
    path = Path(settings.config)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration {path}: {exc.strerror}") from None
    return ConfigSource(parse_config(text, str(path)))
