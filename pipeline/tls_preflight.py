"""Before a long-running command connects over TLS: do we trust the servers' certificates?

Why: a worker without the CA that signed the broker's certificate retries for a minute, logs
the certificate error a dozen times and ends in a library's timeout (kafka-python:
`KafkaTimeoutError: Unable to bootstrap from ...`); the sink would retry ClickHouse forever.
One TLS handshake per configured server turns that into one line naming the server, what
failed and the setting to fix. A server that does not answer is left to the clients' own
retries (ClickHouse may come later: the sink waits for it); only a server that answers with a
certificate we cannot verify, or not with TLS, is a verdict.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import NamedTuple

from pipeline.settings import BOOTSTRAP_SERVER, Settings
from pipeline.urls import parse_clickhouse_url

KAFKA_DEFAULT_PORT = 9092
HANDSHAKE_SECONDS = 10.0


class Refusal(NamedTuple):
    why: str
    untrusted: bool  # the certificate did not verify (the CA setting is what to fix)


def handshake_problem(host: str, port: int, context: ssl.SSLContext,
                      timeout: float = HANDSHAKE_SECONDS) -> Refusal | None:
    """Why a TLS handshake with `host:port` under `context` fails, or None when it succeeds or
    the server cannot be reached (not a TLS verdict: the client retries)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return None
    except ssl.SSLCertVerificationError as exc:
        return Refusal(f"its certificate is not trusted ({exc.verify_message or exc.reason})",
                       untrusted=True)
    except ssl.SSLError as exc:
        return Refusal(f"the TLS handshake failed ({exc.reason or exc}): is this a TLS port?",
                       untrusted=False)
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        return Refusal("it closed the connection during the TLS handshake: is this a TLS port?",
                       untrusted=False)
    except OSError:
        return None


def _context(build: Callable[[], ssl.SSLContext | None], cafile: str, variable: str
             ) -> tuple[ssl.SSLContext | None, str | None]:
    """(the client's TLS context, None), or (None, why its CA file cannot be loaded)."""
    try:
        return build(), None
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, f"{variable}: cannot load the CA file {cafile!r}: {reason}"


def _line(server: str, refusal: Refusal, variable: str, cafile: str) -> str:
    if not refusal.untrusted:
        return f"{server}: {refusal.why}"
    fix = (f"is {variable}={cafile} the CA that signed it?" if cafile else
           f"set {variable} to the CA that signed it")
    return f"{server}: {refusal.why}; {fix}"


def tls_problems(settings: Settings) -> list[str]:
    """One line per configured TLS server (Kafka bootstrap servers with SSL/SASL_SSL, the
    writer's clickhouses:// URL) whose certificate this client would refuse; empty when all is
    well or nothing uses TLS."""
    problems: list[str] = []
    if settings.kafka_security_protocol in {"SSL", "SASL_SSL"}:
        variable, cafile = "PEAKEND_KAFKA_SSL_CAFILE", settings.kafka_ssl_cafile
        # the very context the worker's aiokafka and Faust clients get
        context, unreadable = _context(settings.kafka_ssl_context, cafile, variable)
        if unreadable:
            problems.append(unreadable)
        elif context is not None:
            for server in settings.kafka_bootstrap.split(","):
                match = BOOTSTRAP_SERVER.fullmatch(server)
                if match is None:  # the settings' validator has already refused it
                    continue
                host = match.group(1).strip("[]")
                port = int(match.group(2) or KAFKA_DEFAULT_PORT)
                refusal = handshake_problem(host, port, context)
                if refusal:
                    problems.append(_line(
                        f"Kafka broker {server} ({settings.kafka_security_protocol})", refusal,
                        variable, cafile))
    if settings.clickhouse_url.lower().startswith("clickhouses://"):  # not chdb://, not plain
        url = parse_clickhouse_url(settings.clickhouse_url)
        if url.secure:
            variable, cafile = "PEAKEND_CLICKHOUSE_SSL_CAFILE", settings.clickhouse_ssl_cafile
            # clickhouse-driver verifies against `ca_certs` (the CA file, else the system's)
            context, unreadable = _context(
                lambda: ssl.create_default_context(cafile=cafile or None), cafile, variable)
            if unreadable:
                problems.append(unreadable)
            elif context is not None and (
                    refusal := handshake_problem(url.host, url.port, context)):
                problems.append(_line(f"ClickHouse {url.host}:{url.port} (clickhouses://)",
                                      refusal, variable, cafile))
    return problems
