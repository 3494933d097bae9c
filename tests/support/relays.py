"""Mail relays that misbehave on purpose: real aiosmtpd servers on loopback whose answers the
test scripts (a refusal of the message data, or of the DATA command), with STARTTLS or
implicit TLS on certificates the test makes, and a record of every AUTH attempt."""

import ssl
from collections.abc import Iterable
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from devkit.services import free_port


class ScriptedSMTP(SMTP):
    """aiosmtpd's server, but the DATA command itself may be refused as the relay scripts."""

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd API
        relay: Relay = self.event_handler
        relay.data_commands += 1
        if relay.command_answers:
            await self.push(relay.command_answers.pop(0))
            return
        await super().smtp_DATA(arg)


class RelayController(Controller):
    def factory(self) -> SMTP:
        return ScriptedSMTP(self.handler, **self.SMTP_kwargs)


class Relay:
    """A relay on a free loopback port that answers the data of the next messages with
    ``answers`` ("451 …", "554 …") in turn, then accepts; ``command_answers`` refuse the DATA
    command itself the same way. Accepted messages are kept in ``messages``."""

    def __init__(
        self,
        answers: Iterable[str] = (),
        command_answers: Iterable[str] = (),
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        auth: bool = False,
    ) -> None:
        self.port = free_port()
        self.answers = list(answers)
        self.command_answers = list(command_answers)
        self.messages: list[Message] = []
        self.data_commands = 0  # DATA commands received, refused or not
        self.auth_attempts: list[str] = []
        options: dict = {}
        if tls is not None and implicit_tls:
            options["ssl_context"] = tls
        elif tls is not None:
            options |= {"tls_context": tls, "require_starttls": False}
        if auth:
            options |= {"authenticator": self._authenticate, "auth_require_tls": False}
        self._controller = RelayController(self, hostname="127.0.0.1", port=self.port, **options)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd API
        if self.answers:
            return self.answers.pop(0)
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.auth_attempts.append(mechanism)
        return AuthResult(success=True)

    def __enter__(self) -> "Relay":
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


class Certificates:
    """A certificate authority of the test's own, and a relay certificate it issued."""

    def __init__(self, directory: Path, host: str = "127.0.0.1") -> None:
        self.authority = trustme.CA()
        self.relay = self.authority.issue_cert(host)
        self.ca_file = directory / "relay-ca.pem"
        self.authority.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.relay.configure_cert(context)
        return context
