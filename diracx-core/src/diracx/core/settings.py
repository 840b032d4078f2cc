"""Settings, read from ``DIRACX_*`` environment variables (pydantic-settings).

The same code runs the embedded default and a scaled-out deployment: only
these settings differ.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")


def parse_store_url(url: str) -> tuple[str, str]:
    """``s3://bucket/optional/prefix`` as (bucket, prefix without slashes at either end)."""
    scheme, sep, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not sep:
        raise ValueError(f"store_url must look like s3://bucket/optional/prefix, not {url!r}")
    if not BUCKET_RE.match(bucket):
        raise ValueError(f"store_url {url!r}: {bucket!r} is not a valid S3 bucket name")
    return bucket, prefix.strip("/")


def default_data_dir() -> Path:
    """Where the embedded engine keeps its state: ``$XDG_DATA_HOME/diracx``."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "diracx"


def default_credentials_path() -> Path:
    """Where ``dirac login`` keeps its tokens: ``$XDG_CACHE_HOME/diracx/credentials.json``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "diracx" / "credentials.json"


class ServiceSettings(BaseSettings):
    """Settings shared by the service and the workers."""

    model_config = SettingsConfigDict(env_prefix="DIRACX_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    # SQLAlchemy URL; the default is a SQLite file in data_dir. PostgreSQL:
    # postgresql+asyncpg://user:password@host/db (plain postgresql:// means the same)
    db_url: str | None = None
    # PostgreSQL connection pool, per process: connections kept open, extra ones allowed
    # at peaks, and the age in seconds after which a connection is replaced (-1: never)
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    db_pool_recycle: int = Field(default=1800, ge=-1)
    # a local directory; the default is data_dir/store
    store_path: Path | None = None
    # An S3-compatible bucket instead of the local directory: ``s3://bucket/optional/prefix``
    # (blobs are kept under ``<prefix>/blobs/<digest>``). Unset: the local directory above.
    store_url: str | None = None
    # Where the service and workers reach S3 (unset: AWS itself, by region)
    s3_endpoint_url: str | None = None
    # What clients use in presigned URLs, if it differs (a name inside a compose network...)
    s3_public_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    # Unset: boto3's usual credential chain (AWS_* variables, ~/.aws, instance roles...)
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # Blobs from this size on move in parts (S3 wants parts of at least 5 MiB)
    s3_multipart_threshold: int = Field(default=64 * MiB, ge=1)
    s3_multipart_part_size: int = Field(default=64 * MiB, ge=5 * MiB)
    # With an S3 store, each worker keeps the blobs it used in data_dir/cache, up to this size
    worker_cache_bytes: int = Field(default=10 * 1024 * MiB, ge=0)
    # Celery broker; the default is a transport that needs no server (files in data_dir)
    broker_url: str | None = None
    # The bearer token the service accepts for its local user (the embedded engine mints it)
    service_token: SecretStr | None = None
    # The configuration (diracx.core.config): a YAML file, or a git repository as
    # ``git+<repo url or path>#<file in the repo>`` (read at its HEAD). Unset: one local VO.
    config: str | None = None
    # Look for a new configuration (file mtime and size, or git HEAD) this often (s; 0: never)
    config_reload_interval: float = Field(default=10.0, ge=0)
    # The service's public URL: the issuer of its tokens and the base of its login links
    public_url: str = "http://localhost:8000"
    # Access tokens are short-lived JWTs; refresh tokens rotate on every use
    access_token_lifetime: int = Field(default=1200, ge=10)  # seconds
    refresh_token_lifetime: int = Field(default=7 * 24 * 3600, ge=60)  # seconds
    # A device authorization request waits this long for the user's approval (s)
    device_flow_lifetime: int = Field(default=600, ge=10)
    # ...and its client polls the token endpoint at most this often (s, RFC 8628 3.2)
    device_flow_interval: int = Field(default=5, ge=1)
    # The key that seals the secrets of container steps while their jobs wait
    # (diracx.core.secrets; the embedded engine makes one in data_dir/secret.key).
    # The service and every worker need the same one. Unset: secrets are refused.
    secret_key: SecretStr | None = None
    min_client_version: str = "0.0.0"
    # Builds run at once per worker process. Short builds mostly wait on process
    # start-up and I/O, so the default oversubscribes the cores; lower it for heavy builds.
    worker_slots: int = Field(default_factory=lambda: 4 * (os.cpu_count() or 1), ge=1)
    # The embedded engine stops itself after this many idle seconds
    engine_idle_timeout: float = 600.0
    # Periodic tasks (``dirac scheduler``, or the embedded engine itself) run this often (s)
    periodic_interval: float = Field(default=5.0, gt=0)
    # A Waiting job untouched for this many seconds has its message sent again (it may be lost)
    requeue_after: float = Field(default=120.0, ge=0)
    # Workers report the jobs they hold this often (s); a job without a report for
    # heartbeat_timeout seconds has lost its worker: Stalled, then Rescheduled
    heartbeat_interval: float = Field(default=10.0, gt=0)
    heartbeat_timeout: float = Field(default=60.0, gt=0)
    # A job that lost its worker more often than this fails; the n-th reschedule waits
    # reschedule_backoff * 2**(n-1) seconds. Lost workers never count against a stage's retries.
    max_reschedules: int = Field(default=3, ge=0)
    reschedule_backoff: float = Field(default=5.0, ge=0)
    # Each worker removes the scratch directories of its machine's dead workers this often (s)
    scratch_cleanup_interval: float = Field(default=300.0, gt=0)

    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite+aiosqlite:///{self.data_dir / 'diracx.db'}"

    def resolved_store_path(self) -> Path:
        return self.store_path or self.data_dir / "store"

    def s3_location(self) -> tuple[str, str] | None:
        """(bucket, key prefix) of ``store_url``, or None for the local store."""
        if self.store_url is None:
            return None
        return parse_store_url(self.store_url)

    @field_validator("store_url")
    @classmethod
    def _check_store_url(cls, value: str | None) -> str | None:
        if not value:  # DIRACX_STORE_URL= (empty) means unset: the local directory
            return None
        parse_store_url(value)
        return value

    @property
    def worker_cache_dir(self) -> Path:
        return self.data_dir / "cache"

    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def scratch_dir(self) -> Path:
        # inside data_dir, hence on the store's filesystem: outputs are renamed into the store
        return self.data_dir / "scratch"


class ClientSettings(BaseSettings):
    """Settings of the Python API and the CLI."""

    model_config = SettingsConfigDict(env_prefix="DIRACX_", extra="ignore")

    url: str | None = None  # DIRACX_URL: the service to use; unset means the embedded engine
    token: SecretStr | None = None  # DIRACX_TOKEN: bearer token for DIRACX_URL
    data_dir: Path = Field(default_factory=default_data_dir)
    # DIRACX_CREDENTIALS_PATH: the tokens of `dirac login` (used when DIRACX_TOKEN is unset)
    credentials_path: Path = Field(default_factory=default_credentials_path)
