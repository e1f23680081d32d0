"""A multimodal chain: the image in the user's message is checked together with the text.

The simulator (used when NEMOGUARD_BASE_URL is unset; a rule-based TEST DOUBLE, not a safety model) treats an
image whose top-left pixel is pure red as harmful, so the demo builds one red and one blue image. With
NEMOGUARD_BASE_URL set, the real model judges the same images.

    python examples/langchain_multimodal.py
"""

from __future__ import annotations

import base64
import io
import sys

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from PIL import Image

from langchain_nemoguard import ContentBlockedError, ImageOptions
from langchain_nemoguard.simulator import guard_or_simulator as guard_endpoint


def png_base64(color: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def main() -> int:
    # PNG re-encoding keeps the simulator's exact-colour rule exact (JPEG would shift pure red to 254).
    with guard_endpoint(images=ImageOptions(output_format="PNG")) as guard:
        model = GenericFakeChatModel(messages=iter([AIMessage("A calm blue square."), AIMessage("unused")]))
        chain = guard.wrap(model)
        blue = HumanMessage(
            content=[
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image", "base64": png_base64((0, 0, 255)), "mime_type": "image/png"},
            ]
        )
        print(f"blue image + text -> {chain.invoke([blue]).content}")
        red_only = HumanMessage(  # no text at all: the image alone is judged
            content=[
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/png;base64,{png_base64((255, 0, 0))}"},
                }
            ]
        )
        try:
            chain.invoke([red_only])
        except ContentBlockedError as err:
            print(f"red image only   -> BLOCKED at {err.stage.value} ({err.verdict.reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
