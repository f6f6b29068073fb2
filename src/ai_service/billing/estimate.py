"""Upper bounds of token counts, used to reserve a request's worst-case cost.

The prompt bound is computed from what is actually sent upstream: the body an
adapter built for one target of the chain. Byte-level BPE tokenizers never
produce more tokens than the UTF-8 bytes they encode, and the JSON encoding of
a text is never shorter than the text, so the byte length of that body bounds
the tokens of every field in it, whatever the field (a legacy `function_call`,
a `refusal`, `prediction`, a field the gateway has never heard of, the JSON
instruction the Anthropic adapter adds). Images are the exception: their
base64 payload is taken out of the byte count and replaced by the provider's
own image formula (`ai_service.billing.images`). On top come what the
provider adds unseen (`UpstreamRequest.hidden_tokens`, such as Anthropic's
tool-use system prompt), a per-message allowance for role and separator
tokens, and a per-request allowance for the reply's priming tokens and the
few bytes of fields that depend on the output limit (which may be lowered
after the bound was taken).
"""

from __future__ import annotations

from collections.abc import Sequence

from ai_service.billing.images import Image, image_tokens
from ai_service.providers.base import UpstreamRequest

# the reply's priming tokens and the few bytes by which fields that depend on the output
# limit may grow when it is lowered (the body's non-text fields, such as `model`, already
# count bytes that are never billed)
REQUEST_ALLOWANCE = 16


def prompt_bound(
    sent: UpstreamRequest,
    images: Sequence[Image],
    *,
    provider: str,
    model: str,
    messages: int,
    message_allowance: int,
    image_allowance: int,
) -> int:
    """An upper bound of the prompt tokens of the request `sent` to `provider`'s `model`.

    `images` are the image parts of the client's body (found once for the
    chain) and `messages` the number of its messages.
    """
    text = len(sent.body)
    pictures = 0
    for image in images:
        text -= image.data_bytes
        pictures += image_tokens(provider, model, image, image_allowance)
    return (
        max(text, 0)
        + pictures
        + sent.hidden_tokens
        + messages * message_allowance
        + REQUEST_ALLOWANCE
    )
