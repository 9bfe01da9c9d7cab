"""Configuration: a TOML file, overridden by ``P2CORE_<SECTION>_<KEY>`` variables.

PROTOCOL.md section 2 lists the settings; ``config.example.toml`` documents each one.
Every value is checked here, so the rest of the server receives a typed, valid
:class:`Config` or the start stops with one :class:`ConfigError` line.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from .names import is_domain, is_fid

__all__ = [
    "ENV_PREFIX",
    "AuthConfig",
    "CertsConfig",
    "Config",
    "ConfigError",
    "FederationConfig",
    "GatewayConfig",
    "KeyPackagesConfig",
    "LimitsConfig",
    "LoggingConfig",
    "ServerConfig",
    "load_config",
]

ENV_PREFIX: Final = "P2CORE_"


class ConfigError(ValueError):
    """The configuration cannot be used; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    domain: str = "localhost"
    public_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./data"
    server_cert_lifetime_days: int = 365


@dataclass(frozen=True, slots=True)
class AuthConfig:
    registration: str = "open"
    admins: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CertsConfig:
    actor_lifetime_days: int = 30


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    heartbeat_interval_ms: int = 45000
    outbox_max_events: int = 10000
    outbox_max_age_days: int = 14
    send_queue_max: int = 1024
    rate_per_minute: int = 600
    max_frame_bytes: int = 65536


@dataclass(frozen=True, slots=True)
class KeyPackagesConfig:
    low_threshold: int = 5


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_body_bytes: int = 1048576
    rate_per_minute: int = 60
    body_timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class FederationConfig:
    peers: dict[str, str] = field(default_factory=dict)
    allow_private_addresses: bool = False
    timeout_s: float = 10.0
    cache_ttl_s: int = 300


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"
    format: str = "text"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole, validated configuration of one server."""

    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    certs: CertsConfig = field(default_factory=CertsConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    keypackages: KeyPackagesConfig = field(default_factory=KeyPackagesConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def base_url(self) -> str:
        """The public URL clients and peers use, without a trailing slash."""
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        return f"http://{self.server.domain}:{self.server.port}"

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir)

    def replace(self, section: str, **values: Any) -> Config:
        """Return a copy with some keys of one section changed (used by tests)."""
        current = getattr(self, section)
        return dataclasses.replace(
            self, **{section: dataclasses.replace(current, **values)}
        )


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read the file at ``path`` (or ``./config.toml``), then the environment.

    Raises:
        ConfigError: the file cannot be read or parsed, or a value is wrong.
    """
    raw = _read_file(path)
    _apply_environment(raw, os.environ if environ is None else environ)
    return _build(raw)


def _read_file(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        default = Path("config.toml")
        if not default.exists():
            return {}
        path = default
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {str(path)!r}: {exc.strerror}"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not valid TOML: {exc}"
        ) from exc


def _section_types() -> dict[str, type[Any]]:
    return {
        "server": ServerConfig,
        "auth": AuthConfig,
        "certs": CertsConfig,
        "gateway": GatewayConfig,
        "keypackages": KeyPackagesConfig,
        "limits": LimitsConfig,
        "federation": FederationConfig,
        "logging": LoggingConfig,
    }


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    sections = _section_types()
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections or not key:
            raise ConfigError(f"unknown setting in environment variable {name!r}")
        fields = {f.name: f for f in dataclasses.fields(sections[section])}
        if key not in fields:
            raise ConfigError(f"unknown setting in environment variable {name!r}")
        raw.setdefault(section, {})[key] = _parse_env_value(name, value, fields[key])


def _parse_env_value(name: str, value: str, f: dataclasses.Field[Any]) -> Any:
    kind = _kind(f)
    try:
        if kind is bool:
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        if kind in (list, dict):
            return orjson.loads(value)
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise ConfigError(
            f"environment variable {name!r} has a value of the wrong type: {value!r}"
        ) from exc
    return value


def _kind(f: dataclasses.Field[Any]) -> type:
    annotation = str(f.type)
    for kind in (bool, int, float, str):
        if annotation == kind.__name__:
            return kind
    if annotation.startswith("list"):
        return list
    if annotation.startswith("dict"):
        return dict
    raise AssertionError(f"unhandled config type {annotation}")


def _build(raw: dict[str, Any]) -> Config:
    sections = _section_types()
    built: dict[str, Any] = {}
    for section, value in raw.items():
        if section not in sections:
            raise ConfigError(f"unknown config section [{section}]")
        if not isinstance(value, dict):
            raise ConfigError(f"config section [{section}] must be a table")
        built[section] = _build_section(section, sections[section], value)
    config = _normalized(Config(**built))
    _validate(config)
    return config


def _normalized(config: Config) -> Config:
    """Domains and FIDs compare case-insensitively and are kept lower-case."""
    config = config.replace("server", domain=config.server.domain.lower())
    config = config.replace(
        "auth",
        admins=[a.lower() if isinstance(a, str) else a for a in config.auth.admins],
    )
    peers = {str(k).lower(): v for k, v in config.federation.peers.items()}
    return config.replace("federation", peers=peers)


def _build_section(section: str, cls: type[Any], values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown setting {section}.{key}")
        kind = _kind(fields[key])
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(
                f"setting {section}.{key} must be of type {kind.__name__}, "
                f"got {value!r}"
            )
        checked[key] = value
    return cls(**checked)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _validate(config: Config) -> None:
    s = config.server
    _require(
        is_domain(s.domain),
        f"server.domain is not a valid domain name: {s.domain!r}",
    )
    _require(0 <= s.port <= 65535, f"server.port must be 0 to 65535, got {s.port!r}")
    _require(
        s.public_url == "" or s.public_url.startswith(("http://", "https://")),
        f"server.public_url must start with http:// or https://, got {s.public_url!r}",
    )
    _require(s.data_dir != "", "server.data_dir must not be empty")
    _require(
        1 <= s.server_cert_lifetime_days <= 3650,
        "server.server_cert_lifetime_days must be 1 to 3650",
    )
    _require(
        config.auth.registration in ("open", "closed"),
        f"auth.registration must be 'open' or 'closed', "
        f"got {config.auth.registration!r}",
    )
    for admin in config.auth.admins:
        _require(
            isinstance(admin, str) and is_fid(admin),
            f"auth.admins entry is not a federation ID: {admin!r}",
        )
    days = config.certs.actor_lifetime_days
    _require(
        1 <= days <= 60, f"certs.actor_lifetime_days must be 1 to 60, got {days!r}"
    )
    g = config.gateway
    _require(
        1000 <= g.heartbeat_interval_ms <= 3_600_000,
        f"gateway.heartbeat_interval_ms must be 1000 to 3600000, "
        f"got {g.heartbeat_interval_ms!r}",
    )
    _require(g.outbox_max_events >= 1, "gateway.outbox_max_events must be at least 1")
    _require(
        g.outbox_max_age_days >= 1, "gateway.outbox_max_age_days must be at least 1"
    )
    _require(g.rate_per_minute >= 1, "gateway.rate_per_minute must be at least 1")
    # Room for control frames (Ready, ACKs) next to a backlog that fills half.
    _require(g.send_queue_max >= 8, "gateway.send_queue_max must be at least 8")
    _require(g.max_frame_bytes >= 1024, "gateway.max_frame_bytes must be at least 1024")
    _require(
        config.keypackages.low_threshold >= 0, "keypackages.low_threshold must be >= 0"
    )
    _require(
        config.limits.max_body_bytes >= 1024, "limits.max_body_bytes must be >= 1024"
    )
    _require(config.limits.rate_per_minute >= 1, "limits.rate_per_minute must be >= 1")
    _require(config.limits.body_timeout_s > 0, "limits.body_timeout_s must be positive")
    f = config.federation
    _require(f.timeout_s > 0, "federation.timeout_s must be positive")
    _require(f.cache_ttl_s >= 0, "federation.cache_ttl_s must be >= 0")
    for domain, url in f.peers.items():
        _require(
            is_domain(domain),
            f"federation.peers key is not a domain: {domain!r}",
        )
        _require(
            isinstance(url, str) and url.startswith(("http://", "https://")),
            f"federation.peers.{domain} must be an http(s) base URL, got {url!r}",
        )
    _require(
        config.logging.level in ("debug", "info", "warning", "error"),
        f"logging.level must be debug, info, warning or error, "
        f"got {config.logging.level!r}",
    )
    _require(
        config.logging.format in ("text", "json"),
        f"logging.format must be 'text' or 'json', got {config.logging.format!r}",
    )
