from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define

if TYPE_CHECKING:
    from ..models.identity_provider_view import IdentityProviderView
    from ..models.quota_config import QuotaConfig
    from ..models.vo_view_groups import VOViewGroups
    from ..models.vo_view_service_accounts import VOViewServiceAccounts
    from ..models.vo_view_users import VOViewUsers


T = TypeVar("T", bound="VOView")


@_attrs_define
class VOView:
    """
    Attributes:
        default_group (str):
        executors (list[str] | None):
        groups (VOViewGroups):
        identity_provider (IdentityProviderView | None):
        queues (list[str] | None):
        quotas (QuotaConfig):
        service_accounts (VOViewServiceAccounts):
        users (VOViewUsers):
    """

    default_group: str
    executors: list[str] | None
    groups: VOViewGroups
    identity_provider: IdentityProviderView | None
    queues: list[str] | None
    quotas: QuotaConfig
    service_accounts: VOViewServiceAccounts
    users: VOViewUsers

    def to_dict(self) -> dict[str, Any]:
        from ..models.identity_provider_view import IdentityProviderView  # noqa: PLC0415

        default_group = self.default_group

        executors: list[str] | None
        if isinstance(self.executors, list):
            executors = self.executors

        else:
            executors = self.executors

        groups = self.groups.to_dict()

        identity_provider: dict[str, Any] | None
        if isinstance(self.identity_provider, IdentityProviderView):
            identity_provider = self.identity_provider.to_dict()
        else:
            identity_provider = self.identity_provider

        queues: list[str] | None
        if isinstance(self.queues, list):
            queues = self.queues

        else:
            queues = self.queues

        quotas = self.quotas.to_dict()

        service_accounts = self.service_accounts.to_dict()

        users = self.users.to_dict()

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "default_group": default_group,
                "executors": executors,
                "groups": groups,
                "identity_provider": identity_provider,
                "queues": queues,
                "quotas": quotas,
                "service_accounts": service_accounts,
                "users": users,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.identity_provider_view import IdentityProviderView  # noqa: PLC0415
        from ..models.quota_config import QuotaConfig  # noqa: PLC0415
        from ..models.vo_view_groups import VOViewGroups  # noqa: PLC0415
        from ..models.vo_view_service_accounts import VOViewServiceAccounts  # noqa: PLC0415
        from ..models.vo_view_users import VOViewUsers  # noqa: PLC0415

        d = dict(src_dict)
        default_group = d.pop("default_group")

        def _parse_executors(data: object) -> list[str] | None:
            if data is None:
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                executors_type_0 = cast(list[str], data)

                return executors_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[str] | None, data)

        executors = _parse_executors(d.pop("executors"))

        groups = VOViewGroups.from_dict(d.pop("groups"))

        def _parse_identity_provider(data: object) -> IdentityProviderView | None:
            if data is None:
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                identity_provider_type_0 = IdentityProviderView.from_dict(data)

                return identity_provider_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(IdentityProviderView | None, data)

        identity_provider = _parse_identity_provider(d.pop("identity_provider"))

        def _parse_queues(data: object) -> list[str] | None:
            if data is None:
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                queues_type_0 = cast(list[str], data)

                return queues_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[str] | None, data)

        queues = _parse_queues(d.pop("queues"))

        quotas = QuotaConfig.from_dict(d.pop("quotas"))

        service_accounts = VOViewServiceAccounts.from_dict(d.pop("service_accounts"))

        users = VOViewUsers.from_dict(d.pop("users"))

        vo_view = cls(
            default_group=default_group,
            executors=executors,
            groups=groups,
            identity_provider=identity_provider,
            queues=queues,
            quotas=quotas,
            service_accounts=service_accounts,
            users=users,
        )

        return vo_view
