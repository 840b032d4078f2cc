"""The service's configuration: VOs, groups, users, identity providers, quotas, policies.

One YAML document, validated here with pydantic (``dirac config validate FILE``). The
service reads it from a file or a git repository (``DIRACX_CONFIG``) and reloads it when
it changes; ``GET /api/config`` serves it with an ETag.

Without a configuration (the embedded engine), :func:`local_config` describes the single
local user, in the ``local`` VO.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    model_validator,
)

from diracx.core.passwords import is_password_hash

LOCAL_VO = "local"
LOCAL_USER = "local"
LOCAL_GROUP = "local_user"

# The properties DiracX itself knows; extensions may add others.
NORMAL_USER = "NormalUser"  # submits pipelines, reads and acts on its VO's objects
VO_ADMIN = "VOAdmin"  # acts on every job and pin of its VO (other users' too)
SERVICE_ADMIN = "ServiceAdministrator"  # the whole service: garbage collection, every VO

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]


def _check_hash(value: str) -> str:
    # a password pasted here by mistake must not load (nor be served, logged or hashed)
    if not is_password_hash(value):
        raise ValueError("not an argon2id hash: make one with `dirac auth hash-password`")
    return value


PasswordHash = Annotated[str, AfterValidator(_check_hash)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GroupConfig(StrictModel):
    properties: list[str] = Field(default_factory=lambda: [NORMAL_USER])


class UserConfig(StrictModel):
    """A member of a VO, keyed by subject: the identity provider's ``sub``, or the
    name of a built-in account."""

    groups: list[str]
    preferred_username: str | None = None  # shown by whoami; defaults to the subject


class IdentityProviderConfig(StrictModel):
    """An external OpenID Connect provider (authorization code flow with PKCE)."""

    issuer: AnyHttpUrl
    client_id: str
    # confidential clients only; read from the configuration, never logged or served
    client_secret: str | None = Field(default=None, exclude=True)
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])


class QuotaConfig(StrictModel):
    running_jobs: int | None = Field(default=None, ge=0)  # jobs not yet in a final status
    store_bytes: ByteSize | None = Field(default=None, ge=0)  # what the VO's blobs take


class VOConfig(StrictModel):
    # None: users log in with built-in accounts (``accounts`` below)
    identity_provider: IdentityProviderConfig | None = None
    default_group: str
    groups: dict[Name, GroupConfig]
    users: dict[str, UserConfig] = Field(default_factory=dict)
    quotas: QuotaConfig = QuotaConfig()
    executors: list[str] | None = None  # builder kinds allowed (None: all)
    queues: list[str] | None = None  # queues allowed (None: any)

    @model_validator(mode="after")
    def _groups_exist(self) -> VOConfig:
        if self.default_group not in self.groups:
            raise ValueError(f"default_group {self.default_group!r} is not one of the groups")
        for subject, user in self.users.items():
            unknown = sorted(set(user.groups) - set(self.groups))
            if unknown:
                raise ValueError(f"user {subject!r} is in unknown groups {unknown}")
            if not user.groups:
                raise ValueError(f"user {subject!r} belongs to no group")
        return self


class AccountConfig(StrictModel):
    """A built-in account: a password hash (``dirac auth hash-password``), never a password."""

    password_hash: PasswordHash


class ServiceAccountConfig(StrictModel):
    """A client of the client-credentials grant: another service calling the API."""

    secret_hash: PasswordHash
    vo: str
    group: str


class Config(StrictModel):
    vos: dict[Name, VOConfig]
    accounts: dict[str, AccountConfig] = Field(default_factory=dict)
    service_accounts: dict[Name, ServiceAccountConfig] = Field(default_factory=dict)
    version: Literal[1] = 1

    @model_validator(mode="after")
    def _service_accounts_resolve(self) -> Config:
        for client_id, account in self.service_accounts.items():
            vo = self.vos.get(account.vo)
            if vo is None:
                raise ValueError(f"service account {client_id!r}: unknown VO {account.vo!r}")
            if account.group not in vo.groups:
                raise ValueError(
                    f"service account {client_id!r}: VO {account.vo!r} has no group "
                    f"{account.group!r}"
                )
        return self

    def properties(self, vo: str, group: str) -> list[str]:
        """The properties of *group* in *vo* (empty if either is unknown)."""
        vo_config = self.vos.get(vo)
        group_config = vo_config.groups.get(group) if vo_config else None
        return sorted(group_config.properties) if group_config else []

    def summary(self) -> str:
        """What the document holds, in one line: ``2 VOs, 4 groups, 3 users, ...``."""
        counts = {
            "VO": len(self.vos),
            "group": sum(len(vo.groups) for vo in self.vos.values()),
            "user": sum(len(vo.users) for vo in self.vos.values()),
            "identity provider": sum(1 for vo in self.vos.values() if vo.identity_provider),
            "built-in account": len(self.accounts),
            "service account": len(self.service_accounts),
        }
        return ", ".join(f"{n} {what}{'' if n == 1 else 's'}" for what, n in counts.items())

    def view(self, vos: Iterable[str] | None = None) -> ConfigView:
        """What may be shown of the configuration: the VOs *vos* (None: all), their service
        accounts' VO and group, and never a password hash, secret hash or client secret."""
        shown = self.vos if vos is None else {v: self.vos[v] for v in vos if v in self.vos}
        return ConfigView(
            vos={
                name: VOView(
                    identity_provider=(
                        IdentityProviderView(
                            issuer=str(vo.identity_provider.issuer),
                            client_id=vo.identity_provider.client_id,
                            scopes=list(vo.identity_provider.scopes),
                        )
                        if vo.identity_provider
                        else None
                    ),
                    default_group=vo.default_group,
                    groups=dict(vo.groups),
                    users=dict(vo.users),
                    quotas=vo.quotas,
                    executors=vo.executors,
                    queues=vo.queues,
                    service_accounts={
                        client_id: ServiceAccountView(group=account.group)
                        for client_id, account in sorted(self.service_accounts.items())
                        if account.vo == name
                    },
                )
                for name, vo in sorted(shown.items())
            }
        )


# -- what GET /api/config serves: the same fields, minus every secret -------------------


class IdentityProviderView(StrictModel):
    issuer: str
    client_id: str
    scopes: list[str]


class ServiceAccountView(StrictModel):
    group: str


class VOView(StrictModel):
    identity_provider: IdentityProviderView | None
    default_group: str
    groups: dict[str, GroupConfig]
    users: dict[str, UserConfig]
    quotas: QuotaConfig
    executors: list[str] | None
    queues: list[str] | None
    service_accounts: dict[str, ServiceAccountView]  # client id -> its group in this VO


class ConfigView(StrictModel):
    """The configuration as one user may see it (``GET /api/config``)."""

    vos: dict[str, VOView]


def local_config() -> Config:
    """The embedded engine's configuration: one VO, one user who administers everything."""
    return Config(
        vos={
            LOCAL_VO: VOConfig(
                default_group=LOCAL_GROUP,
                groups={
                    LOCAL_GROUP: GroupConfig(properties=[NORMAL_USER, VO_ADMIN, SERVICE_ADMIN])
                },
                users={LOCAL_USER: UserConfig(groups=[LOCAL_GROUP])},
            )
        }
    )
