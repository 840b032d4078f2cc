"""The configuration: its model, its errors with their location, and its sources (a file or
a git repository, read with the real git command) reloaded without a restart."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from diracx.core.config import SERVICE_ADMIN, Config, local_config
from diracx.core.config_source import (
    ConfigError,
    ConfigSource,
    load_config_file,
    open_config_source,
    parse_config,
    revision_of,
)
from diracx.core.passwords import hash_password
from diracx.core.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "config.example.yaml"
CLIENT_SECRET = "oidc-client-secret-never-shown"


def document(**lhcb: object) -> dict[str, object]:
    """A small valid configuration; *lhcb* replaces fields of the lhcb VO."""
    vo: dict[str, object] = {
        "identity_provider": {
            "issuer": "https://auth.example.org/realms/lhcb",
            "client_id": "diracx",
            "client_secret": CLIENT_SECRET,
        },
        "default_group": "lhcb_user",
        "groups": {"lhcb_user": {"properties": ["NormalUser"]}},
        "users": {"alice": {"groups": ["lhcb_user"]}},
    }
    vo.update(lhcb)
    return {
        "vos": {
            "lhcb": vo,
            "dteam": {
                "default_group": "dteam_user",
                "groups": {"dteam_user": {}, "dteam_ops": {"properties": [SERVICE_ADMIN]}},
            },
        }
    }


def write(path: Path, doc: object) -> None:
    """Write *doc* as YAML; the mtime moves forward even within the clock's resolution."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    if path.stat().st_mtime_ns <= before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def settings_for(tmp_path: Path, config: str, interval: float = 0.0) -> ServiceSettings:
    return ServiceSettings(
        data_dir=tmp_path / "data", config=config, config_reload_interval=interval
    )


# -- the model and its errors -------------------------------------------------------------


def test_the_example_is_valid() -> None:
    config = load_config_file(EXAMPLE)
    assert set(config.vos) == {"lhcb", "dteam"}
    assert config.summary() == (
        "2 VOs, 4 groups, 3 users, 1 identity provider, 1 built-in account, 1 service account"
    )
    assert config.vos["lhcb"].quotas.store_bytes == 200 * 1024**3
    assert config.properties("dteam", "dteam_user") == ["NormalUser"]


def test_errors_name_their_location_and_line() -> None:
    text = yaml.safe_dump(
        document(default_group="nobody", quotas={"running_jobs": -1}), sort_keys=False
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "site.yaml")
    errors = info.value.errors
    lines = text.splitlines()
    quota_line = next(i for i, line in enumerate(lines, 1) if "running_jobs" in line)
    assert f"vos.lhcb.quotas.running_jobs (line {quota_line}): " in errors[0]
    assert "greater than or equal to 0" in errors[0]
    assert len(errors) == 1  # the VO-level check runs once its fields are valid
    fixed = yaml.safe_dump(document(default_group="nobody"), sort_keys=False)
    with pytest.raises(ConfigError) as info:
        parse_config(fixed, "site.yaml")
    [error] = info.value.errors
    assert error.startswith("vos.lhcb (line ")
    assert error.endswith("default_group 'nobody' is not one of the groups")
    assert str(info.value).startswith("site.yaml: not a valid DiracX configuration (1 error):")


def test_yaml_errors_and_empty_documents() -> None:
    with pytest.raises(
        ConfigError, match=r"site.yaml: line 3, column 1: not valid YAML: expected .,. or .\].,"
    ):
        parse_config("vos:\n  - [unclosed\n", "site.yaml")
    with pytest.raises(ConfigError, match=r"site\.yaml: the document is empty"):
        parse_config("# nothing\n", "site.yaml")
    with pytest.raises(ConfigError, match=r"vos \(line 1\): Input should be a valid dictionary"):
        parse_config("vos: [lhcb]\n", "site.yaml")


def test_a_password_instead_of_a_hash_is_refused_without_showing_it() -> None:
    doc = document()
    doc["accounts"] = {"alice": {"password_hash": "hunter2-plain-password"}}
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_dump(doc), "site.yaml")
    assert "accounts.alice.password_hash" in info.value.errors[0]
    assert "dirac auth hash-password" in info.value.errors[0]
    assert "hunter2" not in str(info.value)


def test_service_accounts_must_name_a_vo_and_group() -> None:
    doc = document()
    doc["service_accounts"] = {
        "robot": {"secret_hash": hash_password("s"), "vo": "lhcb", "group": "dteam_user"}
    }
    with pytest.raises(ConfigError, match="VO 'lhcb' has no group 'dteam_user'"):
        parse_config(yaml.safe_dump(doc), "site.yaml")


def test_the_view_never_holds_secrets() -> None:
    doc = document()
    doc["accounts"] = {"alice": {"password_hash": hash_password("alice-password")}}
    doc["service_accounts"] = {
        "robot": {"secret_hash": hash_password("robot"), "vo": "lhcb", "group": "lhcb_user"}
    }
    config = parse_config(yaml.safe_dump(doc), "site.yaml")
    assert config.vos["lhcb"].identity_provider is not None
    assert config.vos["lhcb"].identity_provider.client_secret == CLIENT_SECRET
    everything = config.view().model_dump_json()
    assert CLIENT_SECRET not in everything and "$argon2id$" not in everything
    assert set(config.view().vos) == {"dteam", "lhcb"}
    lhcb = config.view(["lhcb"])
    assert set(lhcb.vos) == {"lhcb"}
    assert lhcb.model_dump()["vos"]["lhcb"]["service_accounts"] == {"robot": {"group": "lhcb_user"}}
    assert lhcb.vos["lhcb"].identity_provider is not None
    assert lhcb.vos["lhcb"].identity_provider.client_id == "diracx"
    assert config.view(["nope"]).vos == {}
    # nor does the revision depend on the client secret
    other = parse_config(yaml.safe_dump(doc).replace(CLIENT_SECRET, "another-secret"), "site.yaml")
    assert revision_of(other) == revision_of(config)


def test_revision_ignores_layout_but_not_content() -> None:
    a = parse_config(yaml.safe_dump(document(), sort_keys=True), "a")
    b = parse_config("# a comment\n" + yaml.safe_dump(document(), sort_keys=False, indent=4), "b")
    assert revision_of(a) == revision_of(b)
    c = parse_config(yaml.safe_dump(document(default_group="lhcb_user", queues=["gpu"])), "c")
    assert revision_of(c) != revision_of(a)


# -- a file -------------------------------------------------------------------------------


def test_without_a_source_the_local_configuration(tmp_path: Path) -> None:
    source = open_config_source(ServiceSettings(data_dir=tmp_path))
    assert source.current() == local_config()
    assert source.check() is False
    assert source.revision == revision_of(local_config())


def test_a_file_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the configuration .*missing\.yaml"):
        open_config_source(settings_for(tmp_path, str(tmp_path / "missing.yaml")))
    bad = tmp_path / "bad.yaml"
    write(bad, {"vos": {"lhcb": {"groups": {}}}})
    with pytest.raises(ConfigError, match=r"vos\.lhcb\.default_group \(line 2\): Field required"):
        open_config_source(settings_for(tmp_path, str(bad)))


def test_a_file_is_reloaded_and_a_bad_version_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "diracx.yaml"
    write(path, document())
    source = open_config_source(settings_for(tmp_path, str(path)))
    first = source.snapshot()
    assert source.check() is False  # nothing changed

    write(path, document(queues=["gpu"]))
    assert source.check() is True
    assert source.current().vos["lhcb"].queues == ["gpu"]
    assert source.revision != first.revision
    second = source.snapshot()

    caplog.set_level(logging.ERROR, logger="diracx.core.config_source")
    write(path, document(default_group="nobody"))
    assert source.check() is False
    assert source.snapshot() is second  # the previous version stays in force
    [record] = caplog.records
    assert "the new configuration is refused" in record.getMessage()
    assert "default_group 'nobody'" in record.getMessage()
    assert source.check() is False
    assert len(caplog.records) == 1  # said once, not at every check

    path.unlink()
    assert source.check() is False
    assert "stays in force): cannot read the configuration" in caplog.records[-1].getMessage()
    assert "No such file or directory" in caplog.records[-1].getMessage()
    assert source.snapshot() is second

    write(path, document(queues=["cpu"]))
    assert source.check() is True
    assert source.current().vos["lhcb"].queues == ["cpu"]


async def test_the_background_task_swaps_new_versions(tmp_path: Path) -> None:
    path = tmp_path / "diracx.yaml"
    write(path, document())
    source = open_config_source(settings_for(tmp_path, str(path), interval=0.05))
    await source.start()
    try:
        write(path, document(executors=["process"]))
        deadline = time.monotonic() + 10
        while source.current().vos["lhcb"].executors != ["process"]:
            assert time.monotonic() < deadline, "the new version was never loaded"
            await asyncio.sleep(0.02)
    finally:
        await source.stop()
    write(path, document(executors=["oci"]))
    await asyncio.sleep(0.2)
    assert source.current().vos["lhcb"].executors == ["process"]  # stopped: no more reloads


def test_current_does_no_io(tmp_path: Path) -> None:
    path = tmp_path / "diracx.yaml"
    write(path, document())
    source = open_config_source(settings_for(tmp_path, str(path)))
    path.unlink()  # gone: current() does not notice, only a check does
    started = time.perf_counter()
    for _ in range(10_000):
        source.current()
    assert time.perf_counter() - started < 0.5
    assert isinstance(source.current(), Config)


# -- a git repository ---------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


def commit(repo: Path, doc: object, path: str = "conf/diracx.yaml") -> str:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    git(repo, "add", path)
    git(repo, "commit", "--quiet", "-m", "config")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "config-repo"
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch=main")
    return path


def test_a_git_repository_at_its_head(
    tmp_path: Path, repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = commit(repo, document())
    settings = settings_for(tmp_path, f"git+{repo}#conf/diracx.yaml")
    source = open_config_source(settings)
    assert source.revision == first
    assert source.origin == f"git+{repo}#conf/diracx.yaml"
    assert source.check() is False

    second = commit(repo, document(queues=["gpu"]))
    assert source.check() is True
    assert (source.revision, source.current().vos["lhcb"].queues) == (second, ["gpu"])

    caplog.set_level(logging.ERROR, logger="diracx.core.config_source")
    commit(repo, "vos: [not, a, mapping]\n")
    assert source.check() is False
    assert source.revision == second
    assert "the new configuration is refused" in caplog.records[-1].getMessage()

    git(repo, "rm", "--quiet", "conf/diracx.yaml")
    git(repo, "commit", "--quiet", "-m", "gone")
    assert source.check() is False
    assert "no file 'conf/diracx.yaml' at commit" in caplog.records[-1].getMessage()

    third = commit(repo, document(queues=["cpu"]))
    assert source.check() is True
    assert source.revision == third

    # a new service reuses the local copy made by the first one
    again = open_config_source(settings)
    assert again.revision == third
    assert len(list((settings.data_dir / "config-cache").iterdir())) == 1


def test_git_sources_that_cannot_be_read(tmp_path: Path, repo: Path) -> None:
    commit(repo, document())
    with pytest.raises(ConfigError, match="a git source is git\\+<repository>#<file in it>"):
        open_config_source(settings_for(tmp_path, f"git+{repo}"))
    with pytest.raises(ConfigError, match=r"no file 'other\.yaml' at commit"):
        open_config_source(settings_for(tmp_path, f"git+{repo}#other.yaml"))
    with pytest.raises(ConfigError, match="git fetch failed"):
        open_config_source(settings_for(tmp_path, f"git+{tmp_path / 'nowhere'}#diracx.yaml"))


def test_a_source_without_reader_never_reloads() -> None:
    source = ConfigSource(local_config())
    assert source.check() is False
    assert source.origin == "(built-in local configuration)"
