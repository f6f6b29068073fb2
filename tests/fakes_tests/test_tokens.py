"""The documented usage formula, as worked examples."""

from __future__ import annotations

from tests.fakes import Answer, ToolCall, Usage, count_words, prompt_tokens, split_chunks
from tests.fakes.tokens import make_plan, split_fragments


def test_chunks_start_at_words_and_rejoin_to_the_text() -> None:
    assert split_chunks("Hello from openai!") == ("Hello", " from", " openai!")
    assert split_chunks("  two  words ") == ("  two", "  words ")
    assert "".join(split_chunks("a\nb c")) == "a\nb c"
    assert split_chunks("") == ()


def test_prompt_tokens_are_three_per_message_plus_words() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Say hello"}, {"type": "image"}]},
        {"role": "tool", "tool_call_id": "x", "content": "sunny and warm"},
    ]
    assert prompt_tokens(messages) == (3 + 2) + (3 + 2) + (3 + 3)
    anthropic = [{"role": "user", "content": [{"type": "tool_result", "content": "it is 9"}]}]
    assert prompt_tokens(anthropic, system="Be brief.") == (3 + 2) + (3 + 3)
    assert count_words("  a b\tc\n") == 3


def test_tool_calls_cost_one_plus_their_fragments() -> None:
    assert split_fragments('{"city": "Paris"}') == ('{"city": "', 'Paris"}')
    assert split_fragments("") == ("",)
    plan = make_plan(
        Answer(tool_calls=(ToolCall("f", '{"city": "Paris"}'),)),
        default_chunks=("x",),
        default_reasoning=(),
        prompt=5,
        limit=None,
        call_ids=iter(["call_1"]),
    )
    assert plan.chunks == ()
    assert plan.tool_calls[0].id == "call_1"
    assert plan.completion_tokens == 1 + 2


def test_limit_is_spent_on_reasoning_first() -> None:
    def plan(limit: int | None) -> tuple[str, str, bool, int]:
        result = make_plan(
            Answer(text="one two three", reasoning="think think"),
            default_chunks=(),
            default_reasoning=(),
            prompt=0,
            limit=limit,
            call_ids=iter(()),
        )
        return result.reasoning_text, result.text, result.truncated, result.completion_tokens

    assert plan(None) == ("think think", "one two three", False, 5)
    assert plan(5) == ("think think", "one two three", False, 5)
    assert plan(3) == ("think think", "one", True, 3)
    assert plan(1) == ("think", "", True, 1)


def test_usage_overrides_keep_unset_fields() -> None:
    result = make_plan(
        Answer(usage=Usage(cached_tokens=4, completion_tokens=99)),
        default_chunks=("a", " b"),
        default_reasoning=(),
        prompt=12,
        limit=None,
        call_ids=iter(()),
    )
    assert (result.prompt_tokens, result.completion_tokens, result.cached_tokens) == (12, 99, 4)
