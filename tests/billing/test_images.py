"""Image sizes read from data URLs, and the providers' image token formulas as worked examples."""

from __future__ import annotations

import base64

import pytest

from ai_service.billing.images import (
    Image,
    anthropic_image_tokens,
    find_images,
    find_message_images,
    image_size,
    image_tokens,
    openai_image_tokens,
)


def png(width: int, height: int, padding: int = 0) -> bytes:
    ihdr = width.to_bytes(4) + height.to_bytes(4) + bytes([8, 6, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4) + b"IHDR" + ihdr + b"\0" * (4 + padding)


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + (16).to_bytes(2) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    exif = b"\xff\xe1" + (2 + 5000).to_bytes(2) + b"\0" * 5000  # a segment to skip
    sof = b"\xff\xc2" + (17).to_bytes(2) + b"\x08" + height.to_bytes(2) + width.to_bytes(2)
    return b"\xff\xd8" + app0 + exif + sof + b"\x03" + b"\0" * 9 + b"\xff\xd9"


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + width.to_bytes(2, "little") + height.to_bytes(2, "little") + b"\0" * 20


def webp(kind: bytes, payload: bytes) -> bytes:
    return b"RIFF" + (100).to_bytes(4, "little") + b"WEBP" + kind + b"\0" * 4 + payload


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(data).decode()


def size(data: bytes) -> tuple[int, int] | None:
    url = data_url(data)
    return image_size(url, url.index(",") + 1)


def test_sizes_are_read_from_png_jpeg_gif_and_webp_headers() -> None:
    assert size(png(4000, 3000)) == (4000, 3000)
    assert size(jpeg(1920, 1080)) == (1920, 1080)
    assert size(gif(640, 480)) == (640, 480)
    vp8x = webp(b"VP8X", b"\0\0\0\0" + (1023).to_bytes(3, "little") + (767).to_bytes(3, "little"))
    assert size(vp8x) == (1024, 768)
    bits = (800 - 1) | (600 - 1) << 14
    assert size(webp(b"VP8L", b"\x2f" + bits.to_bytes(4, "little") + b"\0" * 8)) == (800, 600)
    lossy = b"\0\0\0\x9d\x01\x2a" + (300).to_bytes(2, "little") + (200).to_bytes(2, "little")
    assert size(webp(b"VP8 ", lossy)) == (300, 200)


def test_undecodable_data_has_no_size() -> None:
    assert size(b"not an image at all, just text" * 3) is None
    assert size(png(0, 10)) is None
    assert image_size("data:image/png;base64,!!!!", 22) is None


def test_find_images_measures_the_base64_payload_and_keeps_detail() -> None:
    url = data_url(png(10, 10, padding=100))
    body = {
        "messages": [
            {"role": "system", "content": "text only"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
        ]
    }
    first, second = find_images(body)
    assert first == Image(len(url) - len("data:image/png;base64,"), (10, 10), "low")
    assert second == Image(0, None, None)


@pytest.mark.parametrize(
    ("dimensions", "detail", "tokens"),
    [
        ((1024, 1024), "high", 765),  # OpenAI's example: 768 x 768, 4 tiles
        ((2048, 4096), "high", 1105),  # OpenAI's example: 768 x 1536, 6 tiles
        ((4000, 3000), "auto", 765),  # 2048 x 1536 -> 1024 x 768, 4 tiles
        ((100, 100), None, 255),  # one tile, never scaled up
        ((4000, 3000), "low", 85),
        (None, "high", 85 + 8 * 170),  # unknown size: the most tiles an image can have
        (None, "low", 85),
    ],
)
def test_openai_tile_formula(
    dimensions: tuple[int, int] | None, detail: str | None, tokens: int
) -> None:
    assert openai_image_tokens("gpt-5.4", Image(0, dimensions, detail)) == tokens


def test_openai_patch_models_take_the_larger_formula() -> None:
    # gpt-5.4-mini: 32 px patches times 1.72 at most; 1024 x 1024 is 1024 patches
    assert openai_image_tokens("gpt-5.4-mini", Image(0, (1024, 1024), None)) == 1762
    assert openai_image_tokens("gpt-5.4-nano", Image(0, (1024, 1024), None)) == 2520
    # patches are capped at 1536
    assert openai_image_tokens("gpt-5.4-nano", Image(0, None, None)) == 3779
    assert openai_image_tokens("gpt-4o-mini", Image(0, (512, 512), "high")) == 2833 + 5667


def test_anthropic_formula_by_model_generation() -> None:
    old, new = "claude-sonnet-4-5-20250929", "claude-opus-4-7"
    assert anthropic_image_tokens(old, Image(0, (1000, 1000), None)) == 1334  # 1e6 / 750
    assert anthropic_image_tokens(old, Image(0, (200, 200), None)) == 64  # 8 x 8 patches
    # scaled to a 1568 px long edge, at most ~1600 tokens
    assert anthropic_image_tokens(old, Image(0, (4000, 3000), None)) == 1640
    assert anthropic_image_tokens(old, Image(0, None, None)) == 1640
    # Opus 4.7 and later: a 2576 px long edge, up to 4784 visual tokens
    assert anthropic_image_tokens(new, Image(0, (4000, 3000), None)) == 4784
    assert anthropic_image_tokens(new, Image(0, (1000, 1000), None)) == 1334
    assert anthropic_image_tokens("claude-fable-5-1", Image(0, None, None)) == 4784
    assert anthropic_image_tokens("claude-3-5-sonnet-20241022", Image(0, None, None)) == 1640


def test_other_providers_take_the_allowance() -> None:
    assert image_tokens("mistral", "pixtral-large", Image(0, (10, 10), None), 7000) == 7000
    assert image_tokens("claude", "claude-opus-4-7", Image(0, (10, 10), None), 7000) == 1


def test_an_inline_pdf_counts_as_one_image_of_unknown_size_per_page() -> None:
    pdf = b"%PDF-1.4\n" + b"".join(
        b"%d 0 obj << /Type /Page /Parent 2 0 R >> endobj\n" % i for i in range(3, 6)
    )
    pdf += b"2 0 obj << /Type /Pages /Kids [3 0 R 4 0 R 5 0 R] /Count 3 >> endobj\n"
    part = {"type": "file", "file": {"file_data": data_url(pdf, "application/pdf")}}
    body = {"messages": [{"role": "user", "content": [part, {"type": "text", "text": "sum"}]}]}
    assert find_images(body) == [Image(0, None, None)] * 3
    # a page tree that says more pages than its objects show (objects in compressed streams)
    tree = b"%PDF-1.5\n2 0 obj << /Type /Pages /Count 12 >> endobj\n"
    part = {"type": "file", "file": {"file_data": data_url(tree, "application/pdf")}}
    assert len(find_images({"messages": [{"role": "user", "content": [part]}]})) == 12
    by_id = {"type": "file", "file": {"file_id": "file-abc"}}
    assert find_images({"messages": [{"role": "user", "content": [by_id]}]}) == []


def test_anthropic_message_images_are_found_in_their_own_blocks() -> None:
    picture = base64.b64encode(png(800, 600)).decode()
    pdf = b"%PDF-1.4\n/Type /Page\n/Type /Page\n"
    document = base64.b64encode(pdf).decode()
    base64_image = {"type": "base64", "media_type": "image/png", "data": picture}
    body = {
        "messages": [
            {"role": "user", "content": "text only"},
            {
                "role": "user",
                "content": [
                    "not a block",
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": base64_image},
                    {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}},
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": document,
                        },
                    },
                    {"type": "document", "source": {"type": "text", "data": "plain"}},
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "text/plain", "data": "aGk="},
                    },
                    {"type": "image"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "image", "source": base64_image}],
                    },
                ],
            },
        ]
    }
    found = find_message_images(body)
    one = Image(len(picture), (800, 600), None)
    unknown = Image(0, None, None)
    # the image, the URL image, two PDF pages, an image without a source, the tool result's
    assert found == [one, unknown, unknown, unknown, unknown, one]
    assert find_message_images({"messages": "nope"}) == []


def test_a_pdf_fetched_in_an_earlier_turn_counts_its_pages() -> None:
    pdf = b"%PDF-1.4\n" + b"".join(
        b"%d 0 obj << /Type /Page /Parent 2 0 R >> endobj\n" % i for i in range(3, 6)
    )
    fetched = {
        "type": "web_fetch_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": {
            "type": "web_fetch_result",
            "url": "https://example.com/paper.pdf",
            "content": {
                "type": "document",
                "source": {
                    "type": "base64",
                    "media_type": "application/pdf",
                    "data": base64.b64encode(pdf).decode(),
                },
            },
        },
    }
    body = {"messages": [{"role": "assistant", "content": [fetched]}]}
    assert find_message_images(body) == [Image(0, None, None)] * 3
