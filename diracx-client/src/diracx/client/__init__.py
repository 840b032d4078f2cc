"""DiracX HTTP client: the code generated from the service's OpenAPI spec (``_generated``,
rebuilt by ``make client``) and a thin layer that adds the token, the client version
header and readable errors."""

from diracx.client.client import AsyncDiracxClient, DiracxHTTPError

__all__ = ["AsyncDiracxClient", "DiracxHTTPError"]
