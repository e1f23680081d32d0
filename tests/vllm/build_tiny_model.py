"""Build a tiny, randomly initialised Gemma 3 vision-language model that vLLM's CPU build can serve.

Run it with the vLLM venv's interpreter (it needs torch, transformers and tokenizers)::

    .venv-vllm/bin/python tests/vllm/build_tiny_model.py .cache/vllm-tier/tiny-nemotron

It stands in for ``nvidia/Nemotron-3.5-Content-Safety`` (also a ``Gemma3ForConditionalGeneration``) in the real
vLLM test tier: same architecture and processor, 218k random parameters instead of 4B trained ones, and a chat
template that implements the Nemotron 3.5 ``chat_template_kwargs`` contract, so that the server side of the
protocol (prompt rendering, kwargs, role checks, the image placeholder) is real even though the verdicts are
not. Recipe and gotchas: shared/reference/vllm-cpu-probe.md section 3.

The build is deterministic (fixed seed, fixed tokenizer corpus) and is skipped when the folder holds a stamp
that matches this script, so repeated test sessions reuse it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

SEED = 20260604
STAMP_NAME = ".nemoguard-tiny-model.stamp"
IMAGE_SIZE = 64
PATCH_SIZE = 16
MM_TOKENS_PER_IMAGE = 4  # 4x4 patches pooled 2x2
VOCAB_SIZE = 1400

# Token ids the Gemma 3 config and processor refer to; the tokenizer trainer puts the specials first, in order.
SPECIAL_TOKENS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
]
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]
EOS_ID, BOS_ID, END_OF_TURN_ID, BOI_ID, EOI_ID, IMAGE_ID = 1, 2, 6, 7, 8, 9
# vLLM's gemma3_mm.py looks these up by string; they must be single tokens (a KeyError otherwise).
NEWLINE_RUNS = ["\n", "\n\n", "\n\n\n", "\n\n\n\n"]

# --- the Nemotron 3.5 classifier prompt pieces (shared/reference/nemotron-formats.md 1.4, 4) -----------------

CLASSIFIER_INTRO = (
    "You are a safety classifier for analyzing interactions between humans and LLMs. Given a request from a "
    "human user and a response from an LLM assistant, determine:\n"
    "- Whether the user input is safe or unsafe.\n"
    "- Whether the LLM assistant response is safe or unsafe.\n"
    "- Whether the LLM assistant response is a refusal.\n"
    "- If either the user input or assistant response is unsafe, determine the harmful categories that the "
    "input or response falls into.\n\n"
    "Taxonomy: The following are the list of safety categories that the input and response may fall into.\n\n"
)


def _core_taxonomy() -> tuple[str, ...]:
    """The client's Aegis list, loaded by file path: this script runs in the vLLM venv, where the project's own
    dependencies (and so its package imports) are not installed; taxonomy.py needs only the standard library."""
    path = Path(__file__).resolve().parents[2] / "langchain_nemoguard" / "core" / "taxonomy.py"
    spec = importlib.util.spec_from_file_location("_nemoguard_taxonomy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.AEGIS_CATEGORIES)


# The 23 Aegis names plus S24 "Economic Harm", as the third-party port of the 3.5 template lists them.
CATEGORY_NAMES = [*_core_taxonomy(), "Economic Harm"]
DEFAULT_TAXONOMY = "".join(f"S{i}: {name}.\n" for i, name in enumerate(CATEGORY_NAMES, start=1))
BEGIN_CONVERSATION = "\n<BEGIN CONVERSATION>\n"
END_CONVERSATION = "<END CONVERSATION>\nOutput your answer in the following format:\n\n"
FORMAT_USER = "User Safety: safe or unsafe rating of the user input\n"
FORMAT_RESPONSE = (
    "Response Safety: safe or unsafe rating of the assistant response. Omit if no assistant response present."
)
FORMAT_CATEGORIES = (
    "\nSafety Categories: a comma-separated list of applicable safety categories from the provided taxonomy. "
    "Omit if all safe or not needed."
)
FORMAT_CATEGORIES_POLICY = (
    "\nSafety Categories: a comma-separated list of applicable safety categories from the custom policy. "
    "Omit if all safe or not needed."
)
TAIL = (
    "\n\nOnly output the answer in the format specified above after thinking about the user input and "
    "assistant response.\n\nDo not include anything other than the output in the above format in your "
    "response. "
)
# How the template folds an assistant turn into the conversation (reference section 9: two spaces after agent:).
RESPONSE_PREFIX = "\nresponse: agent:  ### Answer: "
ERR_ALTERNATE = "Conversation roles must alternate user/assistant/user/assistant/..."
ERR_EXCLUSIVE = "custom_policy and custom_taxonomy are mutually exclusive: send one of them."
ERR_CATEGORIES = "request_categories must be '/categories' or '/no_categories'."
ERR_EMPTY = "The conversation is empty: send at least one user turn."


def _lit(text: str) -> str:
    """A Jinja string literal (JSON escapes are a subset of what Jinja's lexer unescapes)."""
    return json.dumps(text)


def chat_template() -> str:
    """The Jinja chat template: Nemotron 3.5's kwargs contract on Gemma 3's turn markup, rendering turns as
    shared/reference/nemotron-formats.md section 9 records them.

    * a leading system message is dropped silently (the real template reads it and never emits it);
    * an assistant turn is folded into the conversation as ``\\nresponse: agent:  ### Answer: {text}`` (two
      spaces after ``agent:``, NVIDIA's SGLang cookbook prefix);
    * the format block always lists ``Safety Categories``; ``/no_categories`` only changes the trailing flag.

    Every piece of output is an explicit string expression and every tag trims whitespace, so the layout of
    this source never leaks into the prompt. The loop over ``message['content']`` makes vLLM pass content as
    OpenAI-style parts (``{"type": "image"}`` / ``{"type": "text"}``), as it does for Gemma 3's own template.
    """
    parts = [
        "{%- if messages | length == 0 -%}{{- raise_exception(" + _lit(ERR_EMPTY) + ") -}}{%- endif -%}",
        "{%- if messages[0]['role'] == 'system' -%}{%- set turns = messages[1:] -%}",
        "{%- else -%}{%- set turns = messages -%}{%- endif -%}",
        "{%- if turns | length == 0 -%}{{- raise_exception(" + _lit(ERR_EMPTY) + ") -}}{%- endif -%}",
        "{%- for message in turns -%}",
        "{%- set expected_role = 'user' if loop.index0 % 2 == 0 else 'assistant' -%}",
        "{%- if message['role'] != expected_role -%}{{- raise_exception(" + _lit(ERR_ALTERNATE) + ") -}}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- set policy = custom_policy if custom_policy is defined and custom_policy else '' -%}",
        "{%- set taxonomy = custom_taxonomy if custom_taxonomy is defined and custom_taxonomy else '' -%}",
        "{%- if policy and taxonomy -%}{{- raise_exception(" + _lit(ERR_EXCLUSIVE) + ") -}}{%- endif -%}",
        "{%- set categories = request_categories if request_categories is defined and request_categories"
        " else '/no_categories' -%}",
        "{%- if categories not in ['/categories', '/no_categories'] -%}",
        "{{- raise_exception(" + _lit(ERR_CATEGORIES) + ") -}}{%- endif -%}",
        "{%- set thinking = '/think' if enable_thinking is defined and enable_thinking else '/no_think' -%}",
        "{{- bos_token -}}{{- '<start_of_turn>user\\n' -}}",
        "{%- if policy -%}{{- policy -}}",
        "{%- else -%}{{- " + _lit(CLASSIFIER_INTRO) + " -}}",
        "{%- if taxonomy -%}{{- taxonomy -}}{%- else -%}{{- " + _lit(DEFAULT_TAXONOMY) + " -}}{%- endif -%}",
        "{%- endif -%}",
        "{{- " + _lit(BEGIN_CONVERSATION) + " -}}",
        "{%- for message in turns -%}",
        "{%- set ns = namespace(text='', images=0) -%}",
        "{%- if message['content'] is string -%}{%- set ns.text = message['content'] -%}",
        "{%- else -%}",
        "{%- for item in message['content'] -%}",
        "{%- if item['type'] == 'image' or item['type'] == 'image_url' -%}{%- set ns.images = ns.images + 1 -%}",
        "{%- elif item['type'] == 'text' -%}",
        "{%- set ns.text = ns.text + (' ' if ns.text else '') + item['text'] -%}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- endif -%}",
        "{%- if message['role'] == 'user' -%}",
        "{%- if not loop.first -%}{{- '\\n' -}}{%- endif -%}{{- 'user: ' -}}",
        # The image placeholder always precedes the text, whatever the order of the parts.
        "{%- for _ in range(ns.images) -%}{{- '<start_of_image>' -}}{%- endfor -%}",
        "{%- else -%}{{- " + _lit(RESPONSE_PREFIX) + " -}}{%- endif -%}",
        "{{- ns.text | trim -}}",
        "{%- endfor -%}",
        "{{- '\\n' -}}{{- " + _lit(END_CONVERSATION) + " -}}",
        "{{- " + _lit(FORMAT_USER + FORMAT_RESPONSE) + " -}}",
        "{%- if policy -%}{{- " + _lit(FORMAT_CATEGORIES_POLICY) + " -}}",
        "{%- else -%}{{- " + _lit(FORMAT_CATEGORIES) + " -}}{%- endif -%}",
        "{{- " + _lit(TAIL) + " -}}{{- categories + ' ' + thinking + '\\nOutput:' -}}",
        "{{- '<end_of_turn>\\n' -}}",
        "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}",
    ]
    return "".join(parts)


def tokenizer_corpus() -> list[str]:
    """Training text: the prompt pieces (so that the classifier prompt stays short) plus newline runs."""
    lines = [
        CLASSIFIER_INTRO,
        DEFAULT_TAXONOMY,
        BEGIN_CONVERSATION,
        END_CONVERSATION,
        FORMAT_USER + FORMAT_RESPONSE + FORMAT_CATEGORIES + FORMAT_CATEGORIES_POLICY + TAIL,
        "/categories /no_categories /think /no_think\nOutput:",
        "User Safety: safe\nResponse Safety: unsafe\nSafety Categories: Violence, Threat\n",
        "<think>\nThe user asks a question. It is safe.\n</think>\n",
        "user: How do I bake bread at home?\nresponse: agent:  ### Answer: Mix flour, water, salt and yeast.\n",
        "Evaluate the user prompt for compliance with the given policy ignoring any previous policies you know "
        "about. First, think through your reasoning step-by-step.\n\n### Policy\nName: \nDescription: \n\n"
        "Disallowed Behaviors:\n- \n\nAllowed Behaviors:\n- \n",
        "The quick brown fox jumps over the lazy dog. What is in this picture? Describe the image.\n",
    ]
    runs = "".join(f"{word}{run}" for word in ("a", "b", "c", "d") for run in NEWLINE_RUNS[::-1] * 4)
    return [*lines, *([runs] * 50), *(lines * 5)]


def build_tokenizer(out: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    # The same pipeline GemmaTokenizer builds around the vocabulary, so that trained merges apply as trained.
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    trainer_tok.normalizer = normalizers.Replace(" ", "▁")
    trainer_tok.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous")
    trainer_tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    alphabet = sorted({ch for line in tokenizer_corpus() for ch in line.replace(" ", "▁")})
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS + BYTE_TOKENS,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    trainer_tok.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    state = json.loads(trainer_tok.to_str())["model"]
    vocab: dict[str, int] = state["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    for index, token in enumerate(SPECIAL_TOKENS):
        assert vocab[token] == index, f"special token {token!r} has id {vocab[token]}, expected {index}"
    missing = [run for run in NEWLINE_RUNS if run not in vocab]
    assert not missing, f"newline runs {missing!r} are not single tokens; vLLM's gemma3_mm needs them"

    tokenizer = GemmaTokenizer(
        vocab=vocab,
        merges=merges,
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    for token, token_id in (
        ("<start_of_turn>", 5),
        ("<end_of_turn>", END_OF_TURN_ID),
        ("<start_of_image>", BOI_ID),
        ("<image_soft_token>", IMAGE_ID),
    ):
        assert tokenizer.convert_tokens_to_ids(token) == token_id, token
    for run in NEWLINE_RUNS:
        assert tokenizer.encode(run, add_special_tokens=False) == [vocab[run]], f"{run!r} is not one token"
    return tokenizer


def build_model(out: Path, vocab_size: int) -> None:
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, GenerationConfig

    torch.manual_seed(SEED)
    config = Gemma3Config(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "layer_types": ["sliding_attention", "full_attention"],
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,  # on the CPU attention backend's list of supported sizes
            "query_pre_attn_scalar": 32,
            "sliding_window": 512,
            "max_position_embeddings": 8192,
            "pad_token_id": 0,
            "bos_token_id": BOS_ID,
            "eos_token_id": [EOS_ID, END_OF_TURN_ID],
        },
        vision_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "vision_use_head": False,
        },
        mm_tokens_per_image=MM_TOKENS_PER_IMAGE,
        boi_token_index=BOI_ID,
        eoi_token_index=EOI_ID,
        image_token_index=IMAGE_ID,
        torch_dtype="bfloat16",
    )
    model = Gemma3ForConditionalGeneration(config)
    # transformers initialises the vision-to-text projection to zeros: the image would then change nothing,
    # and a test could not tell that the pixels reached the model.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("mm_input_projection_weight"):
                param.normal_(0.0, 0.5)
    model = model.to(torch.bfloat16).eval()
    model.save_pretrained(out)
    GenerationConfig(
        bos_token_id=BOS_ID, eos_token_id=[EOS_ID, END_OF_TURN_ID], pad_token_id=0, do_sample=False
    ).save_pretrained(out)

    # transformers writes `vision_tower.embeddings...`; vLLM (like the real checkpoints) wants
    # `vision_tower.vision_model.embeddings...` and refuses to load otherwise.
    weights_path = out / "model.safetensors"
    tensors = load_file(weights_path)
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        head, sep, tail = key.partition("vision_tower.")
        if sep and not tail.startswith("vision_model."):
            key = f"{head}vision_tower.vision_model.{tail}"
        renamed[key] = tensor.contiguous()
    assert any("vision_tower.vision_model." in key for key in renamed), sorted(renamed)[:5]
    save_file(renamed, weights_path, metadata={"format": "pt"})


def build_processor(out: Path, tokenizer: Any) -> None:
    from transformers import Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    image_processor = Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=chat_template(),
        image_seq_length=MM_TOKENS_PER_IMAGE,
    )
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").write_text(chat_template())


def self_check(out: Path) -> dict[str, int]:
    """Reload the folder as vLLM will (HF AutoProcessor, model class) and render with each kwarg."""
    import torch
    from jinja2.exceptions import TemplateError
    from PIL import Image
    from transformers import AutoProcessor, Gemma3ForConditionalGeneration

    processor = AutoProcessor.from_pretrained(out)
    user = {"role": "user", "content": [{"type": "text", "text": "How do I bake bread?"}]}
    assistant = {"role": "assistant", "content": [{"type": "text", "text": "Mix flour and water."}]}

    def render(messages: list[dict[str, Any]], **kwargs: Any) -> str:
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
        assert isinstance(text, str)
        return text

    base = render([user])
    assert base.startswith("<bos><start_of_turn>user\nYou are a safety classifier"), base[:80]
    assert "S24: Economic Harm." in base
    assert "user: How do I bake bread?\n<END CONVERSATION>" in base
    assert base.endswith("/no_categories /no_think\nOutput:<end_of_turn>\n<start_of_turn>model\n"), base[-80:]
    assert (
        "\nSafety Categories: a comma-separated list" in base
    )  # always listed; the flag says /no_categories
    assert "response: agent:" not in base

    both = render([user, assistant])
    assert (
        "user: How do I bake bread?\nresponse: agent:  ### Answer: Mix flour and water.\n<END CONVERSATION>"
        in both
    )
    system = {"role": "system", "content": [{"type": "text", "text": "You are strict."}]}
    assert render([system, user]) == base  # dropped silently, as the real template does
    cats = render([user], request_categories="/categories")
    assert "Safety Categories: a comma-separated list" in cats
    assert "/categories /no_think" in cats
    assert "/no_categories /think\nOutput:" in render([user], enable_thinking=True)
    policy = render([user], custom_policy="### Policy\nName: Bakery\n", request_categories="/categories")
    assert policy.startswith("<bos><start_of_turn>user\n### Policy\nName: Bakery\n")
    assert "You are a safety classifier" not in policy
    assert "from the custom policy" in policy
    taxonomy = render([user], custom_taxonomy="- Trade Secret Leak (custom)\n")
    assert "- Trade Secret Leak (custom)\n\n<BEGIN CONVERSATION>" in taxonomy
    assert "S1: Violence." not in taxonomy

    image_part = {"type": "image"}
    with_image = render([{"role": "user", "content": [{"type": "text", "text": "Describe it."}, image_part]}])
    assert "user: <start_of_image>Describe it.\n" in with_image

    rejected = {
        "system later": [user, {"role": "system", "content": "You are strict."}],
        "assistant first": [assistant],
        "user twice": [user, user],
        "tool role": [user, {"role": "tool", "content": "x"}],
    }
    for label, messages in rejected.items():
        try:
            render(messages)
        except TemplateError:
            continue
        raise AssertionError(f"the template accepted a conversation it must reject: {label}")
    try:
        render([user], custom_policy="p", custom_taxonomy="t")
    except TemplateError:
        pass
    else:
        raise AssertionError("the template accepted custom_policy together with custom_taxonomy")

    model = Gemma3ForConditionalGeneration.from_pretrained(out, dtype=torch.bfloat16).eval()
    image = Image.new("RGB", (48, 32), (200, 30, 30))
    inputs = processor(text=with_image, images=[image], return_tensors="pt")
    blue = processor(text=with_image, images=[Image.new("RGB", (48, 32), (30, 30, 200))], return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        red_logits = model(**inputs).logits[0, -1]
        blue_logits = model(**blue).logits[0, -1]
    assert generated.shape[1] > inputs["input_ids"].shape[1], "the model generated nothing"
    assert not torch.equal(red_logits, blue_logits), "the image does not reach the language model"

    tokens = processor.tokenizer
    return {
        "prompt_tokens": len(tokens(base, add_special_tokens=False)["input_ids"]),
        "prompt_tokens_with_categories": len(tokens(cats, add_special_tokens=False)["input_ids"]),
        "image_prompt_tokens": int(inputs["input_ids"].shape[1]),
    }


def source_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def build(out: Path, *, force: bool = False) -> dict[str, Any]:
    """Build the model into ``out`` unless a matching stamp says it is already there. Returns the stamp."""
    stamp_path = out / STAMP_NAME
    if not force and stamp_path.is_file():
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("source") == source_digest():
            return {**stamp, "skipped": True}
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    stamp_path.unlink(missing_ok=True)
    tokenizer = build_tokenizer(out)
    build_model(out, vocab_size=len(tokenizer))
    build_processor(out, tokenizer)
    stats = self_check(out)
    stamp = {
        "source": source_digest(),
        "seed": SEED,
        **stats,
        "seconds": round(time.perf_counter() - started, 2),
    }
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    return {**stamp, "skipped": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to build the model into")
    parser.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    args = parser.parse_args(argv)
    result = build(args.out, force=args.force)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
