"""The real services the test session starts: smoke tests."""

import smtplib
from email.message import EmailMessage

import redis


def test_redis_server_answers_commands(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.set("greeting", "hello")
    assert client.get("greeting") == b"hello"


def test_smtp_server_captures_sent_messages(smtp_server, mailbox):
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["To"] = "b@example.com"
    message["Subject"] = "Smoke"
    message.set_content("héllo")
    with smtplib.SMTP("127.0.0.1", smtp_server.port) as smtp:
        smtp.send_message(message)
    assert [m["Subject"] for m in mailbox] == ["Smoke"]
    assert mailbox[0].get_payload(decode=True).decode().strip() == "héllo"
