"""Fixtures of the webhook tests: a receiver on loopback, and gateways that send to it.

The gateways scan and poll often, time an attempt out after one second and
back off briefly, so that a retry schedule plays out in a test's seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import UPSTREAM_KEY
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway
from tests.webhooks.receiver import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ADMIN_KEY = "webhooks-admin-key-0123456789abcdef"
FAST: dict[str, Any] = {
    "webhook_secret": SECRET,
    "webhook_timeout": 1.0,
    "webhook_poll_seconds": 0.2,
    "webhook_scan_seconds": 0.3,
    "webhook_retry_base_delay": 0.05,
    "webhook_retry_max_delay": 0.2,
    "webhook_max_attempts": 4,
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(SECRET).start()
    yield found
    found.stop()


@pytest.fixture
def hooked(
    gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI, receiver: Receiver
) -> Callable[..., Gateway]:
    """Start a gateway that sends its alerts to `receiver` (settings may be overridden)."""

    def make(**overrides: Any) -> Gateway:
        values = {
            **FAST,
            "webhook_url": receiver.url,
            "admin_key": ADMIN_KEY,
            "openai_api_key": UPSTREAM_KEY,
            "openai_base_url": openai_upstream.base_url,
            **overrides,
        }
        return gateway_factory(**values)

    return make
