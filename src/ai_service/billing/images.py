"""Upper bounds of the prompt tokens a provider bills for an image.

Each provider bills an image by its own formula of the image's size. The size
is read from the header of a base64 data URL (PNG, JPEG, GIF, WebP); where it
cannot be known (an http(s) URL the provider fetches itself, or undecodable
data), the model's maximum per image is taken.

- OpenAI, tile models (the GPT-4o/4.1/5 families, o-series): `detail: low` is
  the base tokens; otherwise the image is fitted into 2048x2048, its shortest
  side scaled down to 768, and each 512 px tile costs the tile tokens on top of
  the base (85 + 170 per tile; GPT-4o mini 2833 + 5667). The patch models
  (the `mini` and `nano` models) count 32 px patches, at most 1536, times a
  multiplier (1.62 mini, 1.72 o4-mini, 2.46 nano). Where a model's family is
  not certain the larger of the formulas that may apply is taken.
- Anthropic: `width * height / 750` tokens (or 28 px patches, whichever is
  more) after the image is scaled down to the model's native size: a 1568 px
  long edge and about 1,600 tokens before Claude Opus 4.7, a 2576 px long edge
  and 4784 visual tokens since (and for any model not known to be older).
- Other providers: the configured allowance per image.
- An inline PDF: each page is billed as an image (of unknown size here) on top
  of its text, so it counts as one image per page; its bytes stay counted.

Every number is rounded up: the result is a bound, never an estimate.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from ai_service.billing.money import ceil_div

# bytes of decoded data searched for a JPEG frame header before decoding it all
_JPEG_PREFIX = 64 * 1024


@dataclass(frozen=True, slots=True)
class Image:
    """One image part of a request, as far as billing is concerned.

    `data_bytes` is the length of its base64 payload (which appears verbatim in
    every translated body and is billed by the image formula, not as text);
    `size` its (width, height) where known; `detail` OpenAI's `detail`.
    """

    data_bytes: int
    size: tuple[int, int] | None
    detail: str | None


def find_images(body: dict[str, Any]) -> list[Image]:
    """The images of an OpenAI-shaped body: of its `messages` (Chat Completions) or of its
    `input` items (the Responses API).

    `image_url` and `input_image` parts are images (an `input_image` given by
    `file_id` is of unknown size); an inline PDF (a `file` part, or an
    `input_file` with `file_data`) counts as one image of unknown size per
    page (providers bill each page as an image as well as its text, whose
    bytes stay counted as text).
    """
    images: list[Image] = []
    items = body.get("messages")
    if items is None:
        items = body.get("input")
    for item in items if isinstance(items, list) else ():
        content = item.get("content") if isinstance(item, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "image_url":
                images.append(_image(part.get("image_url")))
            elif kind == "input_image":
                images.append(_image({"url": part.get("image_url"), "detail": part.get("detail")}))
            elif kind == "file":
                images.extend([PAGE] * pdf_pages(part.get("file")))
            elif kind == "input_file":
                images.extend([PAGE] * pdf_pages(part))
    return images


PAGE = Image(0, None, None)
_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_PAGE_COUNT = re.compile(rb"/Count\s+(\d{1,6})")


def pdf_pages(file: object) -> int:
    """Pages of an inline PDF (`file_data` data URL): page objects or the page tree's count.

    At least 1; 0 for a file given by id, which the gateway cannot see.
    """
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str):
        return 0
    return _pages(_decode(data_url, data_url.find(",") + 1, len(data_url)))


def _pages(data: bytes) -> int:
    counts = [int(count) for count in _PAGE_COUNT.findall(data)]
    return max(len(_PAGE_OBJECT.findall(data)), *counts, 1)


def find_message_images(body: dict[str, Any]) -> list[Image]:
    """The images of an Anthropic Messages body (its own wire shape, sent unchanged).

    A base64 `image` block is an image of the size its header gives (its
    payload's bytes are in the body); a URL image is of unknown size; a base64
    PDF `document` counts one image of unknown size per page (its bytes stay
    counted as text). Blocks inside a `tool_result`, and the document of an
    earlier turn's `web_fetch_tool_result`, are searched too.
    """
    images: list[Image] = []
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            _message_blocks(content, images)
    return images


def _message_blocks(blocks: list[Any], into: list[Image]) -> None:
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        source = block.get("source")
        source = source if isinstance(source, dict) else {}
        data = source.get("data") if source.get("type") == "base64" else None
        if kind == "image":
            if isinstance(data, str):
                into.append(Image(len(data), image_size(data, 0), None))
            else:
                into.append(Image(0, None, None))
        elif kind == "document":
            if isinstance(data, str) and source.get("media_type") == "application/pdf":
                into.extend([PAGE] * _pages(_decode(data, 0, len(data))))
        elif kind == "tool_result" and isinstance(block.get("content"), list):
            _message_blocks(block["content"], into)
        elif kind == "web_fetch_tool_result" and isinstance(block.get("content"), dict):
            fetched = block["content"].get("content")  # a fetched page's document block
            if isinstance(fetched, dict):
                _message_blocks([fetched], into)


def _image(spec: object) -> Image:
    url = spec.get("url") if isinstance(spec, dict) else spec
    detail = spec.get("detail") if isinstance(spec, dict) else None
    detail = detail if isinstance(detail, str) else None
    if not isinstance(url, str) or not url.startswith("data:"):
        return Image(0, None, detail)
    comma = url.find(",")
    if comma < 0:
        return Image(0, None, detail)
    return Image(len(url) - comma - 1, image_size(url, comma + 1), detail)


def _decode(text: str, start: int, chars: int) -> bytes:
    chunk = text[start : start + chars]
    chunk = chunk[: len(chunk) - len(chunk) % 4]
    try:
        return base64.b64decode(chunk)
    except (binascii.Error, ValueError):
        return b""


def image_size(url: str, start: int) -> tuple[int, int] | None:
    """(width, height) from the header of the base64 data at `url[start:]`, else None."""
    head = _decode(url, start, 64)
    size = _png(head) or _gif(head) or _webp(head)
    if size is None and head.startswith(b"\xff\xd8"):
        size = _jpeg(_decode(url, start, _JPEG_PREFIX * 4 // 3))
        if size is None and len(url) - start > _JPEG_PREFIX * 4 // 3:
            size = _jpeg(_decode(url, start, len(url)))
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def _png(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 24:
        return None
    return int.from_bytes(data[16:20]), int.from_bytes(data[20:24])


def _gif(data: bytes) -> tuple[int, int] | None:
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 10:
        return None
    return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")


def _webp(data: bytes) -> tuple[int, int] | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or len(data) < 30:
        return None
    kind = data[12:16]
    if kind == b"VP8 ":
        return (
            int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF,
        )
    if kind == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _jpeg(data: bytes) -> tuple[int, int] | None:
    """The size in the first start-of-frame segment (SOF0..SOF15 but DHT, JPG, DAC)."""
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # no length
            i += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7 : i + 9]), int.from_bytes(data[i + 5 : i + 7])
        i += 2 + int.from_bytes(data[i + 2 : i + 4])
    return None


def _scaled(size: tuple[int, int], limit: int) -> tuple[int, int]:
    """The size scaled down (rounding up) so that its longer side is at most `limit`."""
    w, h = size
    longest = max(w, h)
    if longest <= limit:
        return w, h
    return ceil_div(w * limit, longest), ceil_div(h * limit, longest)


# -- OpenAI --------------------------------------------------------------------------

_TILE_BASE, _TILE = 85, 170
_MINI_4O_BASE, _MINI_4O_TILE = 2833, 5667
_PATCH_CAP = 1536
_MAX_TILES = 8  # 768 x 2048 after the fit: 2 x 4 tiles of 512 px


def _tiles(size: tuple[int, int] | None, detail: str | None, base: int, tile: int) -> int:
    if detail == "low":
        return base
    if size is None:
        return base + tile * _MAX_TILES
    w, h = _scaled(size, 2048)
    shortest = min(w, h)
    if shortest > 768:
        w, h = ceil_div(w * 768, shortest), ceil_div(h * 768, shortest)
    tiles = min(ceil_div(w, 512) * ceil_div(h, 512), _MAX_TILES)
    return base + tile * tiles


def _patches(size: tuple[int, int] | None, multiplier_percent: int) -> int:
    patches = _PATCH_CAP
    if size is not None:
        patches = min(ceil_div(size[0], 32) * ceil_div(size[1], 32), _PATCH_CAP)
    return ceil_div(patches * multiplier_percent, 100)


def openai_image_tokens(model: str, image: Image) -> int:
    """An upper bound of OpenAI's tokens for `image` sent to `model`."""
    name = model.lower()
    if name.startswith("gpt-4o-mini"):
        return _tiles(image.size, image.detail, _MINI_4O_BASE, _MINI_4O_TILE)
    tokens = _tiles(image.size, image.detail, _TILE_BASE, _TILE)
    if "nano" in name:
        tokens = max(tokens, _patches(image.size, 246))
    elif "mini" in name:
        tokens = max(tokens, _patches(image.size, 172))
    return tokens


# -- Anthropic -----------------------------------------------------------------------

_CLAUDE_VERSION = re.compile(r"claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?:\D|$)")
_OLD_EDGE, _OLD_CAP = 1568, 1640  # 784 x 1568 at 750 px per token: 1639
_NEW_EDGE, _NEW_CAP = 2576, 4784


def _claude_before_4_7(model: str) -> bool:
    name = model.lower()
    if name.startswith(("claude-3", "claude-2")):
        return True
    match = _CLAUDE_VERSION.match(name)
    if match is None:
        return False
    return (int(match[1]), int(match[2] or 0)) < (4, 7)


def anthropic_image_tokens(model: str, image: Image) -> int:
    """An upper bound of Anthropic's tokens for `image` sent to `model`."""
    edge, cap = (_OLD_EDGE, _OLD_CAP) if _claude_before_4_7(model) else (_NEW_EDGE, _NEW_CAP)
    if image.size is None:
        return cap
    w, h = _scaled(image.size, edge)
    return min(max(ceil_div(w * h, 750), ceil_div(w, 28) * ceil_div(h, 28)), cap)


def image_tokens(provider: str, model: str, image: Image, allowance: int) -> int:
    """An upper bound of the tokens `provider` bills for `image` (`allowance` if unknown)."""
    if provider == "openai":
        return openai_image_tokens(model, image)
    if provider == "claude":
        return anthropic_image_tokens(model, image)
    return allowance
