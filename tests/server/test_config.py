"""Configuration: file, environment overrides and validation (PROTOCOL.md section 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_without_file_uses_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, environ={})
    assert config.server.domain == "localhost"
    assert config.server.port == 8080
    assert config.server.data_dir == "./data"
    assert config.certs.actor_lifetime_days == 30
    assert config.gateway.heartbeat_interval_ms == 45000
    assert config.base_url == "http://localhost:8080"


def test_config_reads_default_file_in_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, '[server]\ndomain = "chat.example"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config(None, environ={}).server.domain == "chat.example"


def test_config_example_file_loads_with_defaults() -> None:
    example = Path(__file__).parents[2] / "config.example.toml"
    config = load_config(example, environ={})
    assert config.server.domain == "localhost"
    assert config.federation.peers == {}


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9000\n")
    config = load_config(
        path,
        environ={
            "P2CORE_SERVER_PORT": "8081",
            "P2CORE_AUTH_ADMINS": '["root@localhost"]',
            "P2CORE_FEDERATION_ALLOW_PRIVATE_ADDRESSES": "true",
            "P2CORE_FEDERATION_PEERS": '{"b.example": "http://127.0.0.1:8082"}',
            "P2CORE_FEDERATION_TIMEOUT_S": "2.5",
            "OTHER": "ignored",
        },
    )
    assert config.server.port == 8081
    assert config.auth.admins == ["root@localhost"]
    assert config.federation.allow_private_addresses is True
    assert config.federation.peers == {"b.example": "http://127.0.0.1:8082"}
    assert config.federation.timeout_s == 2.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nport = 'x'\n", "server.port must be of type int"),
        ("[server]\nport = 70000\n", "server.port must be 0 to 65535"),
        ("[server]\nnope = 1\n", "unknown setting server.nope"),
        ("[nope]\nx = 1\n", r"unknown config section \[nope\]"),
        ("[server]\ndomain = 'bad domain'\n", "not a valid domain"),
        ("[certs]\nactor_lifetime_days = 61\n", "1 to 60"),
        ("[auth]\nregistration = 'maybe'\n", "auth.registration"),
        ("[auth]\nadmins = ['nobody']\n", "not a federation ID"),
        ("[federation.peers]\n'b.example' = 'ftp://x'\n", "http\\(s\\) base URL"),
        ("[federation]\nallow_private_addresses = 1\n", "must be of type bool"),
        ("[gateway]\nheartbeat_interval_ms = 10\n", "1000 to 3600000"),
        ("[gateway]\nsend_queue_max = 4\n", "send_queue_max must be at least 8"),
        ("server = 5\n", "must be a table"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_config_rejects_bad_value(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), environ={})


def test_config_lowercases_domain_and_admins(tmp_path: Path) -> None:
    text = "[server]\ndomain = 'Chat.Example'\n[auth]\nadmins = ['Root@Chat.Example']\n"
    config = load_config(write(tmp_path, text), environ={})
    assert config.server.domain == "chat.example"
    assert config.auth.admins == ["root@chat.example"]


def test_config_rejects_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml", environ={})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("P2CORE_SERVER_PORT", "eighty", "wrong type"),
        ("P2CORE_SERVER_NOPE", "1", "unknown setting"),
        ("P2CORE_NOPE_X", "1", "unknown setting"),
        ("P2CORE_FEDERATION_ALLOW_PRIVATE_ADDRESSES", "perhaps", "wrong type"),
        ("P2CORE_AUTH_ADMINS", "[not json", "wrong type"),
    ],
)
def test_environment_rejects_bad_value(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, ""), environ={name: value})
