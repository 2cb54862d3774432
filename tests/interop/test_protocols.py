"""The official `anthropic` and `openai` SDKs across Sluice's protocol translation: each SDK in
front of a backend of the other format (the mock upstream speaks both), plain text, streaming
text and a streamed tool call; and the Responses API, translated and native."""

import json

import anthropic
import openai
import pytest

from conftest import DEADLINE, start_mock, start_sluice

TOOLS_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
TOOLS_ANTHROPIC = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


def protocol_config(mock_addr):
    return f"""
[server]
listen = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
workers = 2

[backends.oai]
provider = "openai"
base_url = "http://{mock_addr}/v1"

[backends.oai-native]
provider = "openai"
base_url = "http://{mock_addr}/v1"
responses_api = "native"

[backends.anth]
provider = "anthropic"
base_url = "http://{mock_addr}/v1"
api_keys = ["sk-ant-backend"]

[models.gpt-on-openai]
targets = [{{ backend = "oai", model = "mock-small" }}]

[models.gpt-native-responses]
targets = [{{ backend = "oai-native" }}]

[models.claude-on-anthropic]
targets = [{{ backend = "anth", model = "claude-mock" }}]
"""


@pytest.fixture(scope="module", params=["uring", "epoll"])
def gw(request):
    mock = start_mock()
    gw = start_sluice(protocol_config(mock.addr), request.param)
    yield gw
    gw.stop()
    mock.stop()


@pytest.fixture
def claude(gw):
    return anthropic.Anthropic(
        base_url=f"http://{gw.addr}", api_key="sk-client", max_retries=0, timeout=DEADLINE
    )


@pytest.fixture
def oai(gw):
    return openai.OpenAI(
        base_url=f"http://{gw.addr}/v1", api_key="sk-client", max_retries=0, timeout=DEADLINE
    )


# --- the anthropic SDK in front of an OpenAI-format backend ---------------------------------


def test_anthropic_sdk_plain_text_on_openai_backend(claude):
    m = claude.messages.create(
        model="gpt-on-openai",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "hello from anthropic"}],
    )
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].text == "hello from anthropic"
    assert m.stop_reason == "end_turn"
    assert m.usage.output_tokens == 3 and m.usage.input_tokens > 0


def test_anthropic_sdk_streaming_text_on_openai_backend(claude):
    with claude.messages.stream(
        model="gpt-on-openai",
        max_tokens=100,
        messages=[{"role": "user", "content": "stream me please"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "stream me please"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


def test_anthropic_sdk_streamed_tool_call_on_openai_backend(claude):
    with claude.messages.stream(
        model="gpt-on-openai",
        max_tokens=200,
        tools=TOOLS_ANTHROPIC,
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "what is the weather in Paris"}],
    ) as stream:
        final = stream.get_final_message()
    tool = [b for b in final.content if b.type == "tool_use"]
    assert len(tool) == 1 and tool[0].name == "get_weather"
    assert isinstance(tool[0].input["city"], str)
    assert final.stop_reason == "tool_use"
    # The tool result goes back through the translation too.
    m = claude.messages.create(
        model="gpt-on-openai",
        max_tokens=100,
        tools=TOOLS_ANTHROPIC,
        messages=[
            {"role": "user", "content": "what is the weather in Paris"},
            {"role": "assistant", "content": final.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool[0].id, "content": "sunny 21C"}
                ],
            },
        ],
    )
    assert "sunny" in m.content[0].text


def test_anthropic_errors_are_sdk_exceptions(claude):
    with pytest.raises(anthropic.NotFoundError) as e:
        claude.messages.create(
            model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.body["type"] == "error"


# --- the openai SDK in front of an Anthropic-format backend ---------------------------------


def test_openai_sdk_plain_text_on_anthropic_backend(oai):
    r = oai.chat.completions.create(
        model="claude-on-anthropic", messages=[{"role": "user", "content": "hello from openai"}]
    )
    assert r.choices[0].message.content == "hello from openai"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 3


def test_openai_sdk_streaming_text_on_anthropic_backend(oai):
    chunks = list(
        oai.chat.completions.create(
            model="claude-on-anthropic",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "stream this back"}],
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "stream this back"
    assert chunks[-1].usage.completion_tokens == 3


def test_openai_sdk_streamed_tool_call_on_anthropic_backend(oai):
    with oai.chat.completions.stream(
        model="claude-on-anthropic",
        tools=TOOLS_OPENAI,
        tool_choice="required",
        messages=[{"role": "user", "content": "what is the weather in Paris"}],
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    assert final.choices[0].finish_reason == "tool_calls"


# --- the Responses API ----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-on-openai", "gpt-native-responses", "claude-on-anthropic"])
def test_openai_sdk_responses(oai, model):
    r = oai.responses.create(model=model, input="answer in kind")
    assert r.status == "completed"
    assert r.output_text == "answer in kind"
    assert r.usage.output_tokens == 3
    with oai.responses.stream(model=model, input="stream the answer") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "stream the answer"
    assert final.output_text == "stream the answer"


@pytest.mark.parametrize("model", ["gpt-on-openai", "claude-on-anthropic"])
def test_openai_sdk_responses_streamed_tool_call(oai, model):
    with oai.responses.stream(
        model=model,
        input="what is the weather in Paris",
        tools=[
            {
                "type": "function",
                "name": "get_weather",
                "parameters": TOOLS_OPENAI[0]["function"]["parameters"],
            }
        ],
        tool_choice="required",
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    calls = [o for o in final.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
