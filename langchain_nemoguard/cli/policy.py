"""``nemoguard policy``: write a custom policy, check it, and try it (or two versions of it) on examples.

    nemoguard policy new --name homework-helper --audience "pupils aged 8-12" \\
        --disallow "Giving complete answers to graded homework" --allow "Explaining the method" -o homework.yaml
    nemoguard policy new -o homework.yaml              # asks the questions instead (on a terminal)
    nemoguard policy validate homework.yaml            # schema, categories, contradictions, length
    nemoguard policy try homework.yaml --example "Solve 3x + 4 = 19 for me" --versus homework-v2.yaml

The file is what ``Policy.load`` / ``PolicySet`` and every ``--policy FILE`` flag read. ``validate`` exits 1 when
it finds an error, 0 otherwise (warnings included). ``try`` judges in THINK mode by default, to show how the model
reads the policy; without an endpoint it uses the in-process interface simulator, which says so.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._endpoint import add_endpoint_args, default_served_context

ACTIONS = ("block", "rewrite", "log")


def configure(p: argparse.ArgumentParser) -> None:
    """The ``policy`` subcommands."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = __doc__.split("\n\n")[1] if __doc__ else None
    sub = p.add_subparsers(dest="policy_command", required=True, metavar="new|validate|try")

    new = sub.add_parser("new", help="scaffold a custom policy file from flags or a few questions")
    new.add_argument("--name", help="the policy's name (also its category in verdicts)")
    new.add_argument("--audience", help="who the guarded application serves")
    new.add_argument("--description", help="what the application is for")
    new.add_argument("--disallow", action="append", default=[], metavar="BEHAVIOUR", help="repeatable")
    new.add_argument("--allow", action="append", default=[], metavar="BEHAVIOUR", help="repeatable")
    new.add_argument("--action", choices=ACTIONS, help="what an unsafe verdict does (default block)")
    new.add_argument(
        "--include-builtin", action="store_true", help="also apply the built-in taxonomy (2 calls)"
    )
    new.add_argument("-o", "--out", help="the file to write (default: <name>.yaml)")
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    new.add_argument(
        "--interactive",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask for what the flags leave out (default: when stdin is a terminal)",
    )
    new.set_defaults(func=_cmd_new)

    val = sub.add_parser("validate", help="check a policy file: schema, categories, contradictions, length")
    val.add_argument("file")
    val.add_argument(
        "--mode",
        choices=("fast", "categories", "think"),
        default="think",
        help="the answer budget to count (default think, the largest)",
    )
    val.add_argument(
        "--context",
        type=int,
        default=None,
        help="served context in tokens (default: nemoguard serve's --max-model-len)",
    )
    val.set_defaults(func=_cmd_validate)

    tr = sub.add_parser("try", help="judge a few examples under a policy, or two versions side by side")
    tr.add_argument("file", help="the policy file")
    tr.add_argument("--name", dest="try_name", help="which policy of the file (default: its default)")
    tr.add_argument("--versus", metavar="FILE", help="a second policy file to compare with")
    tr.add_argument(
        "--versus-name", metavar="NAME", help="which policy of --versus (or of FILE) to compare with"
    )
    tr.add_argument("--example", action="append", default=[], metavar="TEXT", help="a prompt (repeatable)")
    tr.add_argument("--examples", metavar="DATA", help="a data set file or name (see nemoguard eval)")
    tr.add_argument("--limit", type=int, default=10, help="examples taken from --examples (default 10)")
    tr.add_argument("--response", help="an assistant response judged with every example")
    tr.add_argument("--json", action="store_true", help="print the verdicts as JSON lines")
    tr.add_argument(
        "--simulator", action="store_true", help="use the in-process simulator even if configured"
    )
    add_endpoint_args(tr)
    tr.set_defaults(func=_cmd_try, mode="think")  # THINK by default: the traces are the point of trying


# --- new ---------------------------------------------------------------------------------------------------------


def _ask(prompt: str, default: str | None = None) -> str:
    shown = f" [{default}]" if default else ""
    print(f"{prompt}{shown}: ", end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not line:
        raise EOFError("input ended")
    return line.strip() or (default or "")


def _ask_list(prompt: str) -> list[str]:
    print(f"{prompt} (one per line, an empty line ends):", file=sys.stderr)
    items: list[str] = []
    while True:
        line = sys.stdin.readline()
        if not line or not line.strip():
            return items
        items.append(line.strip())


def _cmd_new(args: argparse.Namespace) -> int:
    from ..workbench.policy_tools import dump_yaml, scaffold, validate_file

    interactive = sys.stdin.isatty() if args.interactive is None else args.interactive
    name, disallowed, allowed = args.name, list(args.disallow), list(args.allow)
    audience, description, action = args.audience, args.description, args.action
    if interactive:
        try:
            name = name or _ask("Policy name (short, e.g. homework-helper)")
            description = description or _ask("What is the application for? (optional)") or None
            audience = audience or _ask("Who uses it? (audience, optional)") or None
            disallowed = disallowed or _ask_list("Disallowed behaviours")
            allowed = allowed or _ask_list("Allowed behaviours that could look disallowed (optional)")
            action = action or _ask("Action for an unsafe verdict (block, rewrite, log)", "block")
        except EOFError:
            print("nemoguard policy new: input ended before the questions were answered", file=sys.stderr)
            return 2
    if not name or not disallowed:
        print(
            "nemoguard policy new: needs --name and at least one --disallow (or answer the questions)",
            file=sys.stderr,
        )
        return 2
    if action and action not in ACTIONS:
        print(f"nemoguard policy new: action must be one of {', '.join(ACTIONS)}", file=sys.stderr)
        return 2
    try:
        data = scaffold(
            name=name,
            audience=audience,
            description=description,
            disallowed=disallowed,
            allowed=allowed,
            actions={"*": action} if action else None,
            include_builtin=args.include_builtin,
        )
    except ValueError as exc:
        print(f"nemoguard policy new: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out or f"{name}.yaml")
    if out.exists() and not args.force:
        print(f"nemoguard policy new: {out} exists (pass --force to overwrite)", file=sys.stderr)
        return 2
    out.write_text(
        dump_yaml(
            data,
            comment=[
                "nemoguard policy file: Policy.load / PolicySet.load, and every --policy FILE flag, read it.",
                "Check it with: nemoguard policy validate " + out.name,
            ],
        ),
        encoding="utf-8",
    )
    print(f"wrote {out}", file=sys.stderr)
    findings = validate_file(out, mode="think", context=default_served_context())
    _print_findings(findings)
    _print_rendered(out, name)
    return 1 if any(f.level == "error" for f in findings) else 0


def _print_rendered(path: Path, name: str) -> None:
    from ..core.formats.policy_text import render_custom_policy
    from ..core.policy import PolicySet

    policy = PolicySet.load(path)[name]
    if policy.kind == "custom_policy":
        print("\nWhat the model receives (custom_policy):\n")
        print(textwrap.indent(render_custom_policy(policy, think=False), "    "))


# --- validate ----------------------------------------------------------------------------------------------------


def _print_findings(findings: Sequence[Any]) -> None:
    for f in findings:
        print(str(f))


def _cmd_validate(args: argparse.Namespace) -> int:
    from ..workbench.policy_tools import validate_file

    context = args.context or default_served_context()
    findings = validate_file(args.file, mode=args.mode, context=context)
    _print_findings(findings)
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    print(
        f"{args.file}: {errors} error(s), {warnings} warning(s) (context {context} tokens, {args.mode} mode)"
    )
    return 1 if errors else 0


# --- try ---------------------------------------------------------------------------------------------------------


def _policies(args: argparse.Namespace) -> list[Any]:
    from ..core.errors import ConfigurationError
    from ..core.policy import PolicySet

    first = PolicySet.load(args.file)
    a = first[args.try_name] if args.try_name else first.default
    if args.versus:
        second = PolicySet.load(args.versus)
        b = second[args.versus_name] if args.versus_name else second.default
        return [a, b]
    if args.versus_name:
        b = first[args.versus_name]
        if b.name == a.name:
            raise ConfigurationError("--versus-name names the same policy as --name")
        return [a, b]
    return [a]


def _examples(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    from ..core.errors import ConfigurationError

    out: list[tuple[str, str | None]] = [(t, args.response) for t in args.example]
    if args.examples:
        from ..workbench.datasets import load_dataset

        ds = load_dataset(args.examples)
        out += [(ex.prompt, ex.response) for ex in ds.examples[: args.limit]]
    if not out:
        raise ConfigurationError("nothing to try: pass --example TEXT (repeatable) or --examples DATA")
    return out


def _cmd_try(args: argparse.Namespace) -> int:
    import asyncio

    from ..core.errors import ConfigurationError
    from ._endpoint import endpoint_for_args, guard_from_args, probe_simulator

    if args.policy or args.policy_name:
        raise ConfigurationError(
            "policy try reads its policies from FILE (--name, --versus, --versus-name), "
            "not from --policy / --policy-name"
        )
    policies = _policies(args)
    examples = _examples(args)
    with endpoint_for_args(args) as (base_url, simulated):
        args.base_url = base_url
        guard = guard_from_args(args)
        simulated = simulated or probe_simulator(guard.base_urls)

        async def judge() -> list[list[Any]]:
            async with guard:
                rows = []
                for prompt, response in examples:
                    rows.append(
                        list(
                            await asyncio.gather(
                                *(guard.acheck(prompt=prompt, response=response, policy=p) for p in policies)
                            )
                        )
                    )
                return rows

        verdicts = asyncio.run(judge())
    if args.json:
        import json

        for (prompt, response), row in zip(examples, verdicts, strict=True):
            print(
                json.dumps(
                    {
                        "prompt": prompt,
                        "response": response,
                        "simulator": simulated,
                        "verdicts": {p.name: v.to_dict() for p, v in zip(policies, row, strict=True)},
                    },
                    ensure_ascii=False,
                )
            )
        return 0
    if simulated:
        print("!! INTERFACE SIMULATOR - NOT A SAFETY MODEL: these verdicts and traces come from a rule table")
    print(side_by_side(policies, examples, verdicts))
    return 0


def _verdict_lines(v: Any) -> list[str]:
    if v.error is not None:
        head = f"no verdict ({v.error.value})"
    elif v.safe and v.user_safe is not False and v.response_safe is not False:
        head = "safe"
    else:
        head = "unsafe" + (f": {', '.join(v.categories)}" if v.categories else "")
    lines = [head]
    if v.response_safe is not None:
        lines.append(f"response {'safe' if v.response_safe else 'unsafe'}")
    if v.reasoning:
        lines.append("")
        lines += v.reasoning.strip().splitlines()
    return lines


def side_by_side(
    policies: Sequence[Any],
    examples: Sequence[tuple[str, str | None]],
    verdicts: Sequence[Sequence[Any]],
    width: int | None = None,
) -> str:
    """Each example, then one column per policy: its verdict and THINK trace, wrapped to the terminal."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    cols = len(policies)
    gap = " | "
    col = max(20, (width - len(gap) * (cols - 1)) // cols)
    out = []
    for i, ((prompt, response), row) in enumerate(zip(examples, verdicts, strict=True), 1):
        out.append("=" * min(width, col * cols + len(gap) * (cols - 1)))
        out.append(textwrap.fill(f"[{i}] {prompt}", width=width))
        if response:
            out.append(textwrap.fill(f"    response: {response}", width=width))
        columns = []
        for p, v in zip(policies, row, strict=True):
            cell = [f"{p.name} ({p.fingerprint[:8]})", "-" * min(col, 40)]
            for line in _verdict_lines(v):
                cell += textwrap.wrap(line, col) or [""]
            columns.append(cell)
        height = max(len(c) for c in columns)
        for r in range(height):
            out.append(gap.join((c[r] if r < len(c) else "").ljust(col) for c in columns).rstrip())
    return "\n".join(out)
