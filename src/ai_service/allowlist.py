"""Model allow-lists: which providers and models an API key may use.

A key's allow-list is a list of patterns `PROVIDER:MODEL`. Each half is a
shell-style glob (`fnmatch`'s rules, case-sensitive): `*` any run of
characters, `?` one character, `[seq]` one of `seq`, `[!seq]` one not in it.
PROVIDER is matched against the provider's path name (`openai`, `claude`,
`mistral`, `llama`, `deepseek`; the legacy `/ai/v1` path is `openai`); MODEL
against the whole model id, `/` and `:` included. The pattern splits at its
first colon, so `openai:ft:gpt-4.1*` names OpenAI's fine-tunes of gpt-4.1.

    openai:*                 every model on OpenAI's path
    claude:claude-sonnet-*   Claude's Sonnet models
    *:gpt-4.1*               gpt-4.1 and its variants, on any path
    llama:meta-llama/*       Together's Meta models

A key may use a model when the id it asks for AND the id the catalog resolves
it to (an alias's target) each match a pattern: an alias cannot reach a model
the list does not name. A key without an allow-list (None) may use every
model; an empty list is refused when it is set (it would allow nothing: revoke
the key instead).

Where it applies (`pipeline.check`, `routing.chain_for`): every request to a
model, on every surface, is refused with 403 before anything is reserved or
sent; a fallback the list does not allow is skipped; a route that reaches a
provider without naming a model (retrieving a stored response) needs some
pattern for that provider; `/models` lists only the models the key may use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import translate

from ai_service.errors import InvalidRequestError, PermissionDeniedError

MAX_PATTERNS = 100
MAX_PATTERN_CHARS = 200
DENIED_CODE = "model_not_allowed"


@dataclass(frozen=True, slots=True)
class AllowList:
    """A key's compiled patterns (`parse` checks and builds one)."""

    patterns: tuple[str, ...]
    _compiled: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = field(
        default=(), repr=False, compare=False
    )

    @classmethod
    def of(cls, patterns: Iterable[str]) -> AllowList:
        """Compile stored patterns (already checked by `parse`)."""
        kept = tuple(patterns)
        compiled = []
        for pattern in kept:
            provider, _, model = pattern.partition(":")
            compiled.append((re.compile(translate(provider)), re.compile(translate(model))))
        return cls(kept, tuple(compiled))

    def allows(self, provider: str, model: str) -> bool:
        """Whether one model id of a provider matches a pattern."""
        return any(p.match(provider) and m.match(model) for p, m in self._compiled)

    def permits(self, provider: str, requested: str, model: str) -> bool:
        """Whether a request for `requested`, resolved to `model`, may be served."""
        return self.allows(provider, requested) and (
            model == requested or self.allows(provider, model)
        )

    def reaches(self, provider: str) -> bool:
        """Whether some pattern names this provider (whatever the model)."""
        return any(p.match(provider) for p, _m in self._compiled)


def denial(provider: str, requested: str | None, model: str | None = None) -> PermissionDeniedError:
    """The 403 of a model the key's allow-list does not name (of a provider it does not
    name at all, without `requested`)."""
    if requested is None:
        what = f"the {provider} provider"
    else:
        what = f"the model '{provider}:{requested}'"
        if model is not None and model != requested:
            what += f" (served as '{model}')"
    return PermissionDeniedError(
        f"This API key is not allowed to use {what}; GET /ai/key lists the models it may use.",
        param=None if requested is None else "model",
        code=DENIED_CODE,
    )


def parse(patterns: Sequence[str], providers: Iterable[str], param: str) -> tuple[str, ...]:
    """Check an operator's patterns: each `PROVIDER:MODEL`, its provider half matching a
    provider of `providers`; returns them stripped, in order, without repeats.

    Raises `InvalidRequestError` naming the pattern at fault.
    """
    names = tuple(providers)
    if isinstance(patterns, str) or not patterns:
        raise InvalidRequestError(
            "An allow-list is a non-empty list of PROVIDER:MODEL patterns (an empty one would "
            "allow nothing: revoke the key instead; to allow every model, clear the list).",
            param=param,
        )
    if len(patterns) > MAX_PATTERNS:
        raise InvalidRequestError(
            f"An allow-list has at most {MAX_PATTERNS} patterns.", param=param
        )
    kept: list[str] = []
    for raw in patterns:
        pattern = raw.strip() if isinstance(raw, str) else ""
        provider, colon, model = pattern.partition(":")
        problem = None
        if not colon or not provider or not model:
            problem = "is not of the form PROVIDER:MODEL (e.g. openai:gpt-4.1*, claude:*)"
        elif len(pattern) > MAX_PATTERN_CHARS or not pattern.isprintable() or " " in pattern:
            problem = f"must be printable, without spaces, at most {MAX_PATTERN_CHARS} characters"
        elif not any(re.match(translate(provider), name) for name in names):
            problem = f"names no provider; the providers are {', '.join(names)}"
        if problem is not None:
            raise InvalidRequestError(f"The pattern {raw!r} {problem}.", param=param)
        if pattern not in kept:
            kept.append(pattern)
    return tuple(kept)
