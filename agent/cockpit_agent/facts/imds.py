"""IMDSv2 client: session token, authenticated GETs, bounded retries, typed results."""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Annotated, Any

import structlog
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from cockpit_agent.config import ImdsConfig
from cockpit_agent.errors import ImdsError, ImdsNotFound

log = structlog.get_logger(__name__)

TOKEN_PATH = "/latest/api/token"
IDENTITY_PATH = "/latest/dynamic/instance-identity/document"
MACS_PATH = "/latest/meta-data/network/interfaces/macs/"
PRIMARY_MAC_PATH = "/latest/meta-data/mac"
OUTPOST_ARN_PATH = "/latest/meta-data/outpost-arn"  # only on an instance on an Outpost


MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
NUMBER = re.compile(r"[0-9]{1,3}")  # device-number, network-card: small, ASCII digits only
OUTPOST_ARN = re.compile(
    r"arn:aws[a-z-]*:outposts:[a-z0-9-]{1,32}:[0-9]{12}:outpost/op-[0-9a-zA-Z]{1,32}"
)
# A session token goes into a header: printable ASCII without spaces (no CR/LF to split it).
TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")


def _ipv4(text: str) -> str:
    ipaddress.IPv4Address(text)  # ValueError names the text
    return text


class InstanceIdentity(BaseModel):
    """Who this instance is, from the signed identity document."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    instance_id: Annotated[str, Field(alias="instanceId", pattern=r"^i-[0-9a-zA-Z]{1,32}$")]
    region: str
    availability_zone: str = Field(alias="availabilityZone")
    instance_type: str = Field(alias="instanceType")
    account_id: str = Field(alias="accountId")
    architecture: str = "x86_64"
    image_id: str | None = Field(None, alias="imageId")


class ImdsInterface(BaseModel):
    """One network interface as IMDS describes it."""

    model_config = ConfigDict(frozen=True)

    mac: Annotated[str, Field(pattern=MAC.pattern)]
    device_number: int
    network_card: int = 0
    subnet_id: Annotated[str, Field(pattern=r"^subnet-[0-9a-zA-Z]{1,32}$")] | None = None
    local_ipv4s: list[Annotated[str, AfterValidator(_ipv4)]] = []
    interface_id: Annotated[str, Field(pattern=r"^eni-[0-9a-zA-Z]{1,32}$")] | None = None


MAX_BODY = 1 << 20  # no IMDS answer the agent reads comes near 1 MiB
CHUNK = 64 << 10


class _Transient(Exception):
    """A failure worth retrying (unreachable, timeout, 5xx)."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """IMDS never redirects; following one would carry the session token to another host."""

    def redirect_request(  # noqa: PLR0917 (urllib.request calls it so)
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> None:
        raise ImdsError(f"IMDS answered {req.full_url} with a redirect (HTTP {code}); refused")


# No proxy from the environment (http_proxy): IMDS is link-local and must be asked directly.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


class ImdsClient:
    """IMDSv2 client. `sleep`, `clock` and the urllib `opener` are injectable so tests do not
    wait, and can answer anything.

    One deadline bounds everything a client does (boot_wait_seconds plus five request
    timeouts): a server that answers a byte at a time cannot hold a command for longer.
    """

    def __init__(
        self,
        config: ImdsConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        opener: urllib.request.OpenerDirector = _OPENER,
    ) -> None:
        self.config = config
        self.base = config.endpoint.rstrip("/")
        self._sleep = sleep
        self._clock = clock
        self._opener = opener
        self._token: str | None = None
        self._deadline = clock() + config.boot_wait_seconds + 5 * config.request_timeout_seconds

    # -- transport ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, headers: dict[str, str]) -> str:
        req = urllib.request.Request(self.base + path, method=method, headers=headers)  # noqa: S310
        left = self._deadline - self._clock()
        if left <= 0:
            raise ImdsError(f"IMDS {method} {path}: out of time (endpoint {self.base})")
        timeout = min(left, self.config.request_timeout_seconds)
        until = self._clock() + timeout
        try:
            # The endpoint's scheme is limited to http(s) by ImdsConfig.
            with self._opener.open(req, timeout=timeout) as resp:
                body = self._read(resp, until)
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise _Transient(f"HTTP {exc.code}") from exc
            raise
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            # OSError: timeouts, resets; HTTPException: a status line or body that is not HTTP.
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
            raise _Transient(f"unreachable: {reason}") from exc
        try:
            return body.decode()
        except UnicodeDecodeError as exc:
            raise ImdsError(f"IMDS {path} is not UTF-8 text: {exc}") from exc

    def _read(self, resp: Any, until: float) -> bytes:
        """The body, at most MAX_BODY bytes, all of it before `until`."""
        body = b""
        while chunk := resp.read1(CHUNK):
            body += chunk
            if len(body) > MAX_BODY:
                raise ImdsError(f"IMDS answer over {MAX_BODY} bytes; refused")
            if self._clock() > until:
                raise _Transient("unreachable: the answer took longer than the request timeout")
        return bytes(body)

    def _with_retries(self, method: str, path: str, headers: dict[str, str]) -> str:
        """Retry transient failures: while unreachable up to boot_wait, 5xx up to `retries`."""
        deadline = self._clock() + self.config.boot_wait_seconds
        attempt = 0
        delay = 0.5
        while True:
            try:
                return self._request(method, path, headers)
            except _Transient as exc:
                attempt += 1
                unreachable = str(exc).startswith("unreachable")
                out_of_time = self._clock() + delay > deadline
                if (unreachable and out_of_time) or (
                    not unreachable and attempt > self.config.retries
                ):
                    raise ImdsError(
                        f"IMDS {method} {path} failed after {attempt} attempt(s): {exc} "
                        f"(endpoint {self.base})"
                    ) from exc
                log.info("imds retry", path=path, attempt=attempt, error=str(exc), wait=delay)
                self._sleep(delay)
                delay = min(delay * 2, 5.0)

    def _fetch_token(self) -> str:
        headers = {"X-aws-ec2-metadata-token-ttl-seconds": str(self.config.token_ttl_seconds)}
        try:
            token = self._with_retries("PUT", TOKEN_PATH, headers).strip()
        except urllib.error.HTTPError as exc:
            raise ImdsError(
                f"IMDS refused a session token (HTTP {exc.code}); is IMDSv2 enabled and the "
                "hop limit large enough?"
            ) from exc
        if not token:
            raise ImdsError("IMDS returned an empty session token")
        if not TOKEN.fullmatch(token):
            raise ImdsError(
                f"IMDS returned a session token that is not printable ASCII: {token[:40]!r}"
            )
        return token

    def get(self, path: str) -> str:
        """GET `path` with the session token; a 401 refreshes the token once."""
        for refreshed in (False, True):
            if self._token is None:
                self._token = self._fetch_token()
            try:
                return self._with_retries("GET", path, {"X-aws-ec2-metadata-token": self._token})
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and not refreshed:
                    log.info("imds token rejected; refreshing", path=path)
                    self._token = None
                    continue
                if exc.code == 404:
                    raise ImdsNotFound(f"IMDS has no {path} (HTTP 404)") from exc
                raise ImdsError(f"IMDS GET {path} failed: HTTP {exc.code}") from exc
        raise ImdsError(f"IMDS GET {path}: token refused twice")  # pragma: no cover

    def get_json(self, path: str) -> Any:
        """GET `path` and decode JSON, with a clear error on malformed data."""
        body = self.get(path)
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise ImdsError(f"IMDS {path} is not valid JSON: {exc}") from exc

    # -- typed views -------------------------------------------------------------------------

    def identity(self) -> InstanceIdentity:
        """The instance identity document."""
        doc = self.get_json(IDENTITY_PATH)
        try:
            return InstanceIdentity.model_validate(doc)
        except ValidationError as exc:
            wrong = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ImdsError(f"IMDS identity document is incomplete or invalid: {wrong}") from exc

    def outpost_arn(self) -> str | None:
        """The ARN of the Outpost this instance runs on; None when it runs in a Region."""
        try:
            arn = self.get(OUTPOST_ARN_PATH).strip()
        except ImdsNotFound:
            return None
        if arn and not OUTPOST_ARN.fullmatch(arn):
            raise ImdsError(f"IMDS outpost-arn {arn[:80]!r} is not an Outpost's ARN")
        return arn or None

    def interfaces(self) -> list[ImdsInterface]:
        """Every interface IMDS lists, with the primary MAC forced to device 0."""
        primary = _mac(self.get(PRIMARY_MAC_PATH).strip())
        macs = [_mac(m.rstrip("/")) for m in self.get(MACS_PATH).split()]
        result = []
        for mac in macs:
            base = f"{MACS_PATH}{mac}/"
            keys = {k.strip().rstrip("/") for k in self.get(base).split()}
            result.append(self._interface(mac, base, keys, primary))
        return sorted(result, key=lambda i: (i.network_card, i.device_number, i.mac))

    def _interface(self, mac: str, base: str, keys: set[str], primary: str) -> ImdsInterface:
        def field(name: str) -> str | None:
            return self.get(base + name).strip() if name in keys else None

        device = 0 if mac == primary else _number(mac, "device-number", field("device-number"))
        card = _number(mac, "network-card", field("network-card") or "0")
        try:
            return ImdsInterface(
                mac=mac,
                device_number=device,
                network_card=card,
                subnet_id=field("subnet-id"),
                local_ipv4s=(field("local-ipv4s") or "").split(),
                interface_id=field("interface-id"),
            )
        except ValidationError as exc:
            where = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
            raise ImdsError(f"IMDS interface {mac}: unusable {where}") from exc


def _mac(text: str) -> str:
    """A MAC as IMDS lists it, lower case; ImdsError for anything else (it goes into a URL)."""
    mac = text.lower()
    if not MAC.fullmatch(mac):
        raise ImdsError(f"IMDS listed {text[:40]!r} as a MAC address; it is not one")
    return mac


def _number(mac: str, name: str, text: str | None) -> int:
    if text is None or not NUMBER.fullmatch(text):
        shown = "nothing" if text is None else repr(text[:40])
        raise ImdsError(f"IMDS interface {mac}: {name} is {shown}, not a number")
    return int(text)
