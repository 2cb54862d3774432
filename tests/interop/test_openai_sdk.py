"""The official `openai` Python SDK against Sluice (in front of the mock upstream and the
built-in mock provider)."""

import openai
import pytest

from conftest import start_mock, start_sluice, gateway_config, DEADLINE


@pytest.mark.parametrize("model", ["gpt-4o-mini", "mock"])
def test_chat_non_streaming(client, model):
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello interop world"}]
    )
    assert r.object == "chat.completion"
    assert "hello" in r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@pytest.mark.parametrize("model", ["gpt-4o-mini", "mock"])
def test_chat_streaming_text(client, model):
    chunks = list(
        client.chat.completions.create(
            model=model, stream=True, messages=[{"role": "user", "content": "stream these words"}]
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "stream" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    # No usage chunk unless asked for.
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "mock"])
def test_chat_streaming_include_usage(client, model):
    chunks = list(
        client.chat.completions.create(
            model=model,
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=5,
            messages=[{"role": "user", "content": "one two three four five six seven"}],
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == 5
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 5
    assert any(c.choices and c.choices[0].finish_reason == "length" for c in chunks)


def test_completions_and_embeddings_and_models(client):
    r = client.completions.create(model="gpt-4o-mini", prompt="complete me")
    assert r.choices[0].text
    e = client.embeddings.create(model="gpt-4o-mini", input=["a", "b", "c"])
    assert len(e.data) == 3 and len(e.data[0].embedding) > 0
    ids = {m.id for m in client.models.list()}
    assert ids == {"gpt-4o-mini", "mock"}


def test_errors_surface_as_sdk_exceptions(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream="bad")


def test_upstream_failures_map_to_sdk_errors():
    mock = start_mock("--fault-status", "429")
    gw = start_sluice(gateway_config(mock.addr), "epoll")
    try:
        c = openai.OpenAI(base_url=f"http://{gw.addr}/v1", api_key="k", max_retries=0, timeout=DEADLINE)
        with pytest.raises(openai.RateLimitError):
            c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    finally:
        gw.stop()
        mock.stop()
    # Nothing listening: 502 from the gateway.
    gw = start_sluice(gateway_config("127.0.0.1:9"), "epoll")
    try:
        c = openai.OpenAI(base_url=f"http://{gw.addr}/v1", api_key="k", max_retries=0, timeout=DEADLINE)
        with pytest.raises(openai.APIStatusError) as e:
            c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        assert e.value.status_code == 502
    finally:
        gw.stop()


def test_broken_upstream_stream_raises_in_sdk():
    mock = start_mock("--drop-after", "3", "--tokens", "30")
    gw = start_sluice(gateway_config(mock.addr), "uring")
    try:
        c = openai.OpenAI(base_url=f"http://{gw.addr}/v1", api_key="k", max_retries=0, timeout=DEADLINE)
        with pytest.raises(openai.APIError):
            for _ in c.chat.completions.create(
                model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "x"}]
            ):
                pass
    finally:
        gw.stop()
        mock.stop()


def test_consumer_keys_and_limits_surface_as_sdk_errors():
    """With consumers configured: the SDK's AuthenticationError for a wrong key, and
    RateLimitError (with the retry-after the SDK reads) when a limit is reached."""
    key = "sk-interop-team-0123456789"
    config = f"""
[server]
listen = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
workers = 1

[backends.builtin]
provider = "mock"

[models.mock]
targets = [{{ backend = "builtin" }}]

[consumers.interop]
keys = ["{key}"]

[consumers.interop.limits]
requests_per_minute = 2
"""
    gw = start_sluice(config, "epoll")
    try:
        bad = openai.OpenAI(base_url=f"http://{gw.addr}/v1", api_key="sk-wrong-wrong-wrong", max_retries=0, timeout=DEADLINE)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="mock", messages=[{"role": "user", "content": "x"}])
        good = openai.OpenAI(base_url=f"http://{gw.addr}/v1", api_key=key, max_retries=0, timeout=DEADLINE)
        for _ in range(2):
            good.chat.completions.create(model="mock", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.RateLimitError) as e:
            good.chat.completions.create(model="mock", messages=[{"role": "user", "content": "x"}])
        assert int(e.value.response.headers["retry-after"]) >= 1
        assert e.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    finally:
        gw.stop()
