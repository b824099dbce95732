#!/usr/bin/env python3
"""A tiny AMQP client for the rehearsal, to test what the services themselves never do.

    amqp_probe.py login URL
        exit 0 if URL's user may open a connection, 3 if the broker refuses it (ACCESS_REFUSED:
        bad credentials or guest from afar; NOT_ALLOWED: no access to the vhost)
    amqp_probe.py get URL QUEUE
        basic.get one message from QUEUE and put it back (no ack); exit 0 if the broker allowed
        it (empty queue or not), 3 if it refused it (ACCESS_REFUSED)
    amqp_probe.py publish URL EXCHANGE ROUTING_KEY MESSAGE_ID BODY
        publish one persistent, mandatory message with publisher confirms; exit 0 if the broker
        confirmed it, 3 if it refused it (ACCESS_REFUSED), 1 for anything else

An amqps:// URL is verified against AMQP_CA_FILE (a PEM file) if set, else the system's CAs,
host name included, as the services do; a certificate that fails verification exits 4.
Any other failure exits 1. The reason is printed on stderr.
"""

import os
import ssl
import sys
from typing import Callable

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

REFUSED = 3
CERTIFICATE_REFUSED = 4


def refused(error: Exception) -> bool:
    return any(code in repr(error) for code in ("ACCESS_REFUSED", "NOT_ALLOWED")) or isinstance(
        error,
        (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError),
    )


def failure_status(error: Exception) -> int:
    if certificate_refused(error):
        return CERTIFICATE_REFUSED
    return REFUSED if refused(error) else 1


def certificate_refused(error: BaseException) -> bool:
    """pika wraps the TLS handshake's failure in its own errors: look through them."""
    seen: list[BaseException] = [error]
    while seen:
        current = seen.pop()
        if isinstance(current, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in repr(current):
            return True
        seen += [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
        if current.__cause__ is not None:
            seen.append(current.__cause__)
    return False


def connect(url: str) -> pika.BlockingConnection:
    parameters = pika.URLParameters(url)
    if url.startswith("amqps://"):
        context = ssl.create_default_context(cafile=os.environ.get("AMQP_CA_FILE") or None)
        parameters.ssl_options = pika.SSLOptions(context, server_hostname=parameters.host)
    parameters.connection_attempts = 1
    parameters.socket_timeout = 5
    parameters.blocked_connection_timeout = 5
    return pika.BlockingConnection(parameters)


def login(url: str) -> int:
    try:
        connect(url).close()
    except Exception as error:  # noqa: BLE001 - the kind of failure is the answer
        print(f"connection refused: {error!r}", file=sys.stderr)
        return failure_status(error)
    print("connected", file=sys.stderr)
    return 0


def on_channel(url: str, action: Callable[[BlockingChannel], None], failed: str, done: str) -> int:
    """Runs `action` on a channel of a new connection; exit status as the module says."""
    try:
        connection = connect(url)
    except Exception as error:  # noqa: BLE001
        print(f"cannot connect: {error!r}", file=sys.stderr)
        return failure_status(error)
    try:
        action(connection.channel())
    except Exception as error:  # noqa: BLE001
        print(f"{failed}: {error!r}", file=sys.stderr)
        return failure_status(error)
    finally:
        if connection.is_open:
            connection.close()
    print(done, file=sys.stderr)
    return 0


def get(url: str, queue: str) -> int:
    def get_and_put_back(channel: BlockingChannel) -> None:
        method, _, _ = channel.basic_get(queue=queue, auto_ack=False)
        if method is not None:
            channel.basic_nack(method.delivery_tag, requeue=True)

    return on_channel(url, get_and_put_back, "get refused", "allowed")


def publish(url: str, exchange: str, routing_key: str, message_id: str, body: str) -> int:
    def publish_confirmed(channel: BlockingChannel) -> None:
        channel.confirm_delivery()
        channel.basic_publish(
            exchange=exchange,
            routing_key=routing_key,
            body=body.encode(),
            properties=pika.BasicProperties(
                delivery_mode=2, content_type="application/json", message_id=message_id
            ),
            mandatory=True,
        )

    return on_channel(url, publish_confirmed, "publish failed", "confirmed")


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "login":
        return login(argv[2])
    if len(argv) == 4 and argv[1] == "get":
        return get(argv[2], argv[3])
    if len(argv) == 7 and argv[1] == "publish":
        return publish(*argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
