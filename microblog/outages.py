"""What counts as a dependency's outage: the database, Redis or the mail relay away for now.

Jobs wait such errors out (see :mod:`microblog.jobs.worker.runner`) and background passes log
them as one WARNING line; anything else is a bug or bad data, and keeps its traceback.
"""

import smtplib
import socket

import redis
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

EXPECTED_ERRORS = (
    ConnectionError,  # refused, reset, or the relay's answer lost (mailer.DeliveryUncertain)
    TimeoutError,
    socket.gaierror,  # the relay's name does not resolve
    smtplib.SMTPException,
    redis.RedisError,
    OperationalError,  # connection lost or refused, server shutting down or starting
    InterfaceError,  # a connection already closed under us
)
READ_ONLY_SQLSTATE = "25006"  # a server in recovery or a read-only replica refuses writes


def is_outage(error: BaseException) -> bool:
    """Tell whether ``error`` says a dependency is away for now, rather than a bug."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if getattr(getattr(error, "orig", None), "sqlstate", None) == READ_ONLY_SQLSTATE:
        return True
    return isinstance(error, EXPECTED_ERRORS)
