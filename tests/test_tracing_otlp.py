"""Tracing end to end: `ai-service serve` exports its spans over OTLP/HTTP to a local receiver
(flushed at shutdown); with tracing off, a gateway that served a request never imported
the OpenTelemetry SDK."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.conftest import UPSTREAM_KEY
from tests.fakes.openai_flavours import FakeOpenAI
from tests.fakes.otlp import OtlpReceiver, attributes
from tests.support.databases import SqliteTemplate
from tests.support.processes import GatewayProcess, gateway_env

ROOT = Path(__file__).resolve().parent.parent
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
BODY = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as found:
        yield found


def create_user(env: dict[str, str]) -> str:
    """A user with a balance, by the CLI; its key (the last line printed)."""
    done = subprocess.run(
        [sys.executable, "-m", "ai_service", "users", "create", "alice", "--balance", "5"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1].strip()


def test_serve_exports_its_spans_to_an_otlp_receiver_at_shutdown(
    tmp_path: Path,
    sqlite_template: SqliteTemplate,
    openai_upstream: FakeOpenAI,
    receiver: OtlpReceiver,
) -> None:
    env = gateway_env(
        sqlite_template.fresh(tmp_path),
        "otel-1",
        openai_upstream.base_url,
        UPSTREAM_KEY,
        AI_SERVICE_TRACING="true",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.origin,
        OTEL_BSP_SCHEDULE_DELAY="600000",  # nothing is exported before the shutdown's flush
    )
    key = create_user(env)
    gateway = GatewayProcess(env, tmp_path / "gw.log").start()
    try:
        r = httpx.post(
            gateway.url + "/ai/openai/chat/completions",
            json=BODY,
            headers={"X-API-Key": key, "traceparent": TRACEPARENT},
            timeout=20,
        )
        assert r.status_code == 200, r.text
    finally:
        gateway.stop()
    assert gateway.wait(5) == 0
    found = receiver.wait_spans(2)
    assert set(receiver.content_types) == {"application/x-protobuf"}
    by_kind = {span.kind: (resource, span) for resource, span in found}
    assert len(found) == 2, gateway.logs()[-3000:]
    resource, request = by_kind[Span.SPAN_KIND_SERVER]
    _, attempt = by_kind[Span.SPAN_KIND_CLIENT]
    assert resource["service.name"] == "ai-service"
    assert resource["service.instance.id"].startswith("otel-1-")
    assert request.name == attempt.name == "chat gpt-5.4-mini"
    assert request.trace_id.hex() == attempt.trace_id.hex() == TRACE_ID
    assert attempt.parent_span_id == request.span_id
    seen = attributes(request.attributes)
    assert seen["gen_ai.provider.name"] == seen["gen_ai.system"] == "openai"
    assert seen["gen_ai.response.model"] == "gpt-5.4-mini"
    assert seen["gen_ai.usage.input_tokens"] > 0 and seen["gen_ai.usage.output_tokens"] > 0
    assert seen["ai_service.cost_usd"] > 0
    assert seen["ai_service.request_id"] == r.headers["x-request-id"]
    assert attributes(attempt.attributes)["ai_service.attempt"] == 1
    sent = openai_upstream.last_request.headers["traceparent"]
    assert sent == f"00-{TRACE_ID}-{attempt.span_id.hex()}-01"


SERVE_ONE = textwrap.dedent(
    """
    import sys

    import httpx
    import orjson

    from tests.conftest import make_settings
    from tests.support.gateway import Gateway

    db_url, upstream, key, tracing = sys.argv[1:5]
    settings = make_settings(
        db_url, openai_api_key=key, openai_base_url=upstream, tracing=tracing == "on"
    )
    gw = Gateway(settings).start()
    secret = gw.create_user("alice", "10")
    r = httpx.post(
        gw.url + "/ai/openai/chat/completions",
        json={"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-API-Key": secret},
        timeout=20,
    )
    gw.stop()
    # the SDK's tracing and exporters, and the spans (redis-py 8 imports the SDK's metrics
    # package itself, at its import, whenever the SDK is installed: not a tracer)
    traced = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "ai_service.tracing.")
    loaded = [m for m in sys.modules if m.startswith(traced)]
    print(orjson.dumps({"status": r.status_code, "loaded": sorted(loaded)}).decode())
    """
)


@pytest.mark.parametrize("tracing", ["off", "on"])
def test_the_sdk_is_imported_only_with_tracing_on(
    tmp_path: Path,
    sqlite_template: SqliteTemplate,
    openai_upstream: FakeOpenAI,
    receiver: OtlpReceiver,
    tracing: str,
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.origin,
    }
    args = [sqlite_template.fresh(tmp_path), openai_upstream.base_url, UPSTREAM_KEY, tracing]
    done = subprocess.run(
        [sys.executable, "-c", SERVE_ONE, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 200
    if tracing == "off":
        assert result["loaded"] == []
    else:
        for module in ("opentelemetry.sdk.trace", "ai_service.tracing.spans"):
            assert module in result["loaded"]
        assert any(m.startswith("opentelemetry.exporter.otlp") for m in result["loaded"])
