"""How a :class:`Policy` is phrased for Nemotron 3.5's chat template (and read back by the 8B format).

The model takes a policy in one of two ``chat_template_kwargs``: ``custom_policy`` (Mode A, the layout of the
Nemotron 3.5 model card) or ``custom_taxonomy`` (Mode B, category lines plus an allow-list, as in NVIDIA's
custom-policy cookbook). The two exclude each other in one call, so a policy that also applies the built-in
taxonomy costs a second call with no policy kwargs. This is wire phrasing, so it belongs to the format, not to
the policy.
"""

from __future__ import annotations

from ..policy import Policy
from ..taxonomy import category_name

THINK_SENTENCE = " First, think through your reasoning step-by-step."
_MODE_A_HEAD = (
    "Evaluate the user prompt for compliance with the given policy ignoring any previous policies you know about."
)


def render_custom_policy(policy: Policy, *, think: bool) -> str:
    """The policy text in the format of the Nemotron 3.5 model card (Mode A)."""
    lines = [_MODE_A_HEAD + (THINK_SENTENCE if think else ""), "", "### Policy", f"Name: {policy.name}"]
    if policy.description:
        lines.append(f"Description: {policy.description}")
    lines += ["", "Disallowed Behaviors:", *(f"- {d}" for d in policy.disallowed)]
    if policy.allowed:
        lines += ["", "Allowed Behaviors:", *(f"- {a}" for a in policy.allowed)]
    return "\n".join(lines)


def render_custom_taxonomy(policy: Policy) -> str:
    """Category lines plus an allow-list, as in NVIDIA's custom-policy cookbook (Mode B)."""
    out = []
    for entry in policy.taxonomy or ():
        name = category_name(entry)
        rest = entry.strip().lstrip("-*").strip()[len(name) :].strip().lstrip(":").strip()
        rest = rest.removeprefix("(").removesuffix(")").strip()
        out.append(f"- {name} ({rest})" if rest else f"- {name}")
    text = "\n".join(out)
    if policy.allowed:
        text += "\n\nAllow-list (explicitly permitted even if adjacent to a category above):\n"
        text += "\n".join(f"- {a}" for a in policy.allowed)
    return text


def policy_kwarg_variants(policy: Policy, *, think: bool) -> list[dict[str, str]]:
    """The policy part of ``chat_template_kwargs`` for each call a check needs (one, or two)."""
    if policy.kind == "custom_policy":
        variants = [{"custom_policy": render_custom_policy(policy, think=think)}]
    elif policy.kind == "custom_taxonomy":
        variants = [{"custom_taxonomy": render_custom_taxonomy(policy)}]
    else:
        return [{}]
    if policy.include_builtin:
        variants.append({})
    return variants
