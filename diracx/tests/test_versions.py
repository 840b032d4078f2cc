"""diracx.core.version: a mix of installed diracx versions is reported clearly."""

from __future__ import annotations

import re
import warnings

import pytest

from diracx.core import version as dv
from diracx.core.exceptions import VersionMismatchError


def installed(monkeypatch: pytest.MonkeyPatch, versions: dict[str, str]) -> None:
    monkeypatch.setattr(dv, "installed_versions", lambda: dict(versions))


def test_one_version_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = {name: "0.3.1" for name in dv.PARTS}
    installed(monkeypatch, versions)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dv.check_versions() == versions
        assert dv.check_versions(strict=True) == versions


def test_a_mix_is_an_error_naming_every_version(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(
        monkeypatch,
        {
            "diracx": "0.3.1",
            "diracx-api": "0.3.1",
            "diracx-cli": "0.3.1",
            "diracx-client": "0.2.0",
            "diracx-core": "0.3.1",
        },
    )
    with pytest.raises(VersionMismatchError) as excinfo:
        dv.check_versions(strict=True)
    message = str(excinfo.value)
    # each package with its version, grouped: the odd one out stands alone
    assert (
        "0.3.1: diracx==0.3.1, diracx-api==0.3.1, diracx-cli==0.3.1, diracx-core==0.3.1" in message
    )
    assert "0.2.0: diracx-client==0.2.0" in message
    # and the command that fixes it, to the newest version, for every installed part
    assert (
        "pip install 'diracx==0.3.1' 'diracx-api==0.3.1' 'diracx-cli==0.3.1' "
        "'diracx-client==0.3.1' 'diracx-core==0.3.1'"
    ) in message


def test_a_mix_is_a_warning_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, {"diracx-core": "0.3.1", "diracx-routers": "0.4.0"})
    with pytest.warns(UserWarning, match=re.escape("diracx-routers==0.4.0")):
        versions = dv.check_versions()
    assert versions == {"diracx-core": "0.3.1", "diracx-routers": "0.4.0"}


def test_newest_is_chosen_by_pep440_not_by_string(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, {"diracx-core": "0.10.0", "diracx-db": "0.9.0"})
    with pytest.raises(
        VersionMismatchError, match=re.escape("'diracx-core==0.10.0' 'diracx-db==0.10.0'")
    ):
        dv.check_versions(strict=True)


def test_local_labels_of_one_checkout_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Editable builds of one commit differ only in the local label (a dirty tree adds a date)."""
    installed(
        monkeypatch,
        {"diracx-core": "0.3.2.dev4+g1a2b3c4", "diracx-db": "0.3.2.dev4+g1a2b3c4.d20260101"},
    )
    dv.check_versions(strict=True)


def test_a_dev_build_and_a_release_do_not_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, {"diracx-core": "0.3.2.dev4+g1a2b3c4", "diracx-db": "0.3.1"})
    with pytest.raises(VersionMismatchError):
        dv.check_versions(strict=True)


def test_nothing_installed_or_unparsable(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, {})
    assert dv.check_versions(strict=True) == {}
    installed(monkeypatch, {"diracx-core": "not-a-version", "diracx-db": "0.3.1"})
    with pytest.raises(VersionMismatchError, match="not-a-version"):
        dv.check_versions(strict=True)


def test_installed_versions_reads_this_environment() -> None:
    """In the workspace every part is installed (editable), all at one version."""
    dv.installed_versions.cache_clear()
    versions = dv.installed_versions()
    assert set(versions) == set(dv.PARTS)
    assert versions["diracx-core"] == dv.core_version()
    assert dv.mismatch_message(versions) is None


def test_is_older() -> None:
    assert dv.is_older("0.2.0", "0.10.0")
    assert not dv.is_older("0.10.0", "0.10.0")
    assert dv.is_older("garbage", "0.1.0")
