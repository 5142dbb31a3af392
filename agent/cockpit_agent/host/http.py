"""HTTP requests to this host's own services (Cockpit's login page)."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request


def https_get(url: str, timeout: float) -> tuple[int, str]:
    """GET a URL without verifying its certificate (Cockpit's is self-signed by default).

    A bare client context: the default one loads the system's CA bundle, which verifies
    nothing here and took half a second of every `check` in the lab guest."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(url)  # noqa: S310 - the URL is built from our own config
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310
            return int(resp.status), resp.read(65536).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
