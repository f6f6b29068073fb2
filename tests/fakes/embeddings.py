"""The embeddings endpoints of the OpenAI-shaped fakes (``POST {base}/embeddings``).

Each provider's documented request and answer:

* OpenAI: ``input`` is a string, a list of strings, a token array or a list of
  token arrays; ``encoding_format`` ``float`` (default) or ``base64`` (the
  little-endian float32 bytes, which the official SDK asks for by default and
  decodes); ``dimensions`` only on the ``text-embedding-3`` models (the vector
  is shortened and normalised again). Answer: ``{"object": "list", "data":
  [{"object": "embedding", "index", "embedding"}], "model", "usage":
  {"prompt_tokens", "total_tokens"}}``.
* Mistral: ``input`` is a string or a list of strings (token arrays are a 422
  validation error); ``output_dimension`` instead of ``dimensions``;
  ``encoding_format`` as OpenAI. The answer also carries an ``id`` and
  ``usage.completion_tokens`` (0).
* Together: ``input`` is a string or a list of strings; the answer is
  ``{"object": "list", "data", "model"}`` with no ``usage``, as the API
  reference documents it.
* DeepSeek has no embeddings endpoint (its fake answers 404).

Vectors are deterministic (``embedding_vector``): unit length, float32 values,
derived from the model and the input. Prompt tokens are the words of every
input string, or the length of every token array (``embedding_tokens``).
``Answer(usage=Usage(prompt_tokens=n))`` replaces the count.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from .behaviours import Answer, ErrorReply
from .server import Frame
from .tokens import count_words

if TYPE_CHECKING:
    from .openai_compat import OpenAICompatibleFake

# Native vector sizes; other models get DEFAULT_DIMENSIONS of their provider.
DIMENSIONS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "mistral-embed": 1024,
    "codestral-embed": 1536,
}

Input = str | list[int]


def embedding_vector(model: str, item: Input, dimensions: int) -> list[float]:
    """The fake's embedding of one input: float32 values of a unit vector.

    A shortened vector (``dimensions`` below the model's size) is the prefix of the
    full one, normalised again, as OpenAI documents for ``dimensions``.
    """
    full = max(DIMENSIONS.get(model, dimensions), dimensions)
    seed = hashlib.sha256(f"{model}\0{item!r}".encode()).digest()
    rng = random.Random(int.from_bytes(seed[:8], "big"))
    values = [rng.uniform(-1.0, 1.0) for _ in range(full)][:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return _float32([v / norm for v in values])


def encode_base64(vector: list[float]) -> str:
    """OpenAI's ``encoding_format: base64``: the little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_tokens(items: Sequence[Input]) -> int:
    """Prompt tokens of an embeddings request: words of strings, length of token arrays."""
    return sum(count_words(i) if isinstance(i, str) else len(i) for i in items)


def _float32(values: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def _is_tokens(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


class EmbeddingsEndpoint:
    """OpenAI's ``POST /v1/embeddings``; the other providers subclass it."""

    default_dimensions: ClassVar[int] = 1536
    token_arrays: ClassVar[bool] = True
    dimensions_field: ClassVar[str] = "dimensions"

    def __init__(self, fake: OpenAICompatibleFake) -> None:
        self.fake = fake

    # ---- Surface -----------------------------------------------------------------

    def streaming(self, body: dict[str, Any]) -> bool:
        return False

    def validate(self, body: Any, headers: dict[str, str]) -> ErrorReply | None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return ErrorReply(400, "you must provide a model parameter")
        if "input" not in body:
            return ErrorReply(
                400,
                "Missing required parameter: 'input'.",
                param="input",
                code="missing_required_parameter",
            )
        if self.inputs(body["input"]) is None:
            return self.invalid_input(body["input"])
        fmt = body.get("encoding_format")
        if fmt is not None and fmt not in ("float", "base64"):
            return ErrorReply(
                400,
                f"Invalid value: '{fmt}'. Supported values are: 'float' and 'base64'.",
                param="encoding_format",
                code="invalid_value",
            )
        return self.validate_dimensions(model, body.get(self.dimensions_field))

    def answer_json(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        model: str = body["model"]
        items = self.inputs(body["input"]) or []
        size = body.get(self.dimensions_field) or self.dimensions(model)
        vectors = [embedding_vector(model, item, size) for item in items]
        base64_wanted = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": encode_base64(vector) if base64_wanted else vector,
            }
            for index, vector in enumerate(vectors)
        ]
        tokens = embedding_tokens(items)
        if answer.usage is not None and answer.usage.prompt_tokens is not None:
            tokens = answer.usage.prompt_tokens
        return self.envelope(model, data, tokens)

    def answer_frames(self, body: dict[str, Any], answer: Answer) -> Sequence[Frame]:
        raise NotImplementedError("embeddings are never streamed")

    def stream_error_frame(self, error: ErrorReply | None) -> bytes:
        raise NotImplementedError("embeddings are never streamed")

    # ---- what a provider changes -------------------------------------------------

    def dimensions(self, model: str) -> int:
        return DIMENSIONS.get(model, self.default_dimensions)

    def inputs(self, value: object) -> list[Input] | None:
        """The inputs of a request, or None when ``input`` is not of an accepted form."""
        if isinstance(value, str):
            return [value] if value else None
        if not isinstance(value, list) or not value:
            return None
        if all(isinstance(v, str) and v for v in value):
            return list(value)
        if self.token_arrays and _is_tokens(value):
            return [list(value)]
        if self.token_arrays and all(_is_tokens(v) for v in value):
            return [list(v) for v in value]
        return None

    def invalid_input(self, value: object) -> ErrorReply:
        return ErrorReply(
            400,
            "'$.input' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
        )

    def validate_dimensions(self, model: str, dimensions: object) -> ErrorReply | None:
        if dimensions is None:
            return None
        if not model.startswith("text-embedding-3"):
            return ErrorReply(400, "This model does not support specifying dimensions.")
        native = self.dimensions(model)
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
            return ErrorReply(
                400,
                f"Invalid 'dimensions': integer below minimum value. Expected a value >= 1, "
                f"but got {dimensions} instead.",
                param="dimensions",
                code="integer_below_min_value",
            )
        if dimensions > native:
            return ErrorReply(
                400,
                f"Invalid 'dimensions': integer above maximum value. Expected a value <= "
                f"{native}, but got {dimensions} instead.",
                param="dimensions",
                code="integer_above_max_value",
            )
        return None

    def envelope(self, model: str, data: list[dict[str, Any]], tokens: int) -> dict[str, Any]:
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


class MistralEmbeddings(EmbeddingsEndpoint):
    """Mistral's ``POST /v1/embeddings``: strings only, ``output_dimension``, an ``id``."""

    default_dimensions: ClassVar[int] = 1024
    token_arrays: ClassVar[bool] = False
    dimensions_field: ClassVar[str] = "output_dimension"

    def invalid_input(self, value: object) -> ErrorReply:
        detail = {
            "type": "string_type",
            "loc": ["body", "input", "str"],
            "msg": "Input should be a valid string",
            "input": value,
        }
        body = {
            "object": "error",
            "message": {"detail": [detail]},
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        return ErrorReply(422, body=body)

    def validate_dimensions(self, model: str, dimensions: object) -> ErrorReply | None:
        if dimensions is None:
            return None
        if not isinstance(dimensions, int) or not 1 <= dimensions <= self.dimensions(model):
            return ErrorReply(400, f"Invalid output_dimension {dimensions} for model {model}")
        return None

    def envelope(self, model: str, data: list[dict[str, Any]], tokens: int) -> dict[str, Any]:
        return {
            "id": f"{self.fake.next_id():032x}",
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
        }


class TogetherEmbeddings(EmbeddingsEndpoint):
    """Together's ``POST /v1/embeddings``: strings only, no ``usage`` in the answer."""

    default_dimensions: ClassVar[int] = 768
    token_arrays: ClassVar[bool] = False

    def validate_dimensions(self, model: str, dimensions: object) -> ErrorReply | None:
        return None  # not a Together parameter; ignored

    def answer_json(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        return super().answer_json({**body, "dimensions": None}, answer)

    def envelope(self, model: str, data: list[dict[str, Any]], tokens: int) -> dict[str, Any]:
        return {"object": "list", "data": data, "model": model}
