"""The layout's rules, checked: the public surface, what the core may import, and what start-up loads.

DESIGN.md section 2: dependencies point downwards only; the core imports no framework and nothing above it,
except the one declared lazy import in ``NemoGuard.wrap``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import langchain_nemoguard

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "langchain_nemoguard"
CORE = PACKAGE / "core"

PUBLIC = [
    "Action",
    "AuditOptions",
    "CacheOptions",
    "CallOptions",
    "ConfigurationError",
    "ContentBlockedError",
    "Conversation",
    "CoverageOptions",
    "ErrorCode",
    "GuardUnavailableError",
    "GuardedChatModel",  # issue 11: guard.wrap(chat_model) is a chat model; importable for isinstance and types
    "GuardedRunnable",
    "ImageOptions",
    "InvalidInputError",
    "NemoGuard",
    "NemoGuardError",
    "NemoGuardMiddleware",
    "Outcome",
    "Policy",
    "PolicyNotFoundError",
    "PolicySet",
    "Stage",
    "StreamOptions",
    "TransportOptions",
    "Verdict",
    "WindowOptions",
    "__version__",
]

# Third-party packages the core may use; frameworks and the simulator's server stack are not among them.
# httpcore (httpx's own transport, a declared dependency): the sync client's sockets held to the check's deadline.
CORE_THIRD_PARTY = {"aiohttp", "httpcore", "httpx", "PIL", "pydantic", "tenacity", "yaml"}
DECLARED_LAZY = ("guard.py", "wrap", "langchain_nemoguard.langchain.runnable")
# Types only (under ``if TYPE_CHECKING:``, never imported at run time): wrap's overloads name what it returns.
DECLARED_TYPING = (
    "guard.py",
    {
        "langchain_core.language_models",
        "langchain_core.runnables",
        "langchain_nemoguard.langchain.chat_model",
        "langchain_nemoguard.langchain.runnable",
    },
)


def test_public_surface_is_pinned() -> None:
    assert sorted(langchain_nemoguard.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(langchain_nemoguard, name) is not None
    internals = ["CallSpec", "split_windows", "estimate_tokens", "StreamGuard", "for_stage", "Taxonomy"]
    for name in internals:
        assert name not in langchain_nemoguard.__all__
        with pytest.raises(AttributeError):
            getattr(langchain_nemoguard, name)


def test_internals_are_reachable_from_their_modules() -> None:
    from langchain_nemoguard.core.formats import CallSpec, parse_verdict_text
    from langchain_nemoguard.core.streaming import StreamGuard
    from langchain_nemoguard.core.windows import HoldbackBuffer, split_windows

    assert all((CallSpec, parse_verdict_text, StreamGuard, HoldbackBuffer, split_windows))


def test_one_content_blocked_error() -> None:
    from langchain_nemoguard.langchain.events import ModelContentBlockedError

    classes = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name == "ContentBlockedError":
                classes.add(path.relative_to(REPO).as_posix())
    assert classes == {"langchain_nemoguard/core/errors.py"}
    # LangChain raises it as a subclass that is also a ModelError (not retried by ModelRetryMiddleware)
    assert issubclass(ModelContentBlockedError, langchain_nemoguard.ContentBlockedError)


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """(absolute module, enclosing function or None) for every import in a core module."""
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1]
    out: list[tuple[str, str | None]] = []

    def visit(node: ast.AST, func: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                inner = "TYPE_CHECKING"
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[: len(package) - (child.level - 1)]
                    target = ".".join([*base, *([child.module] if child.module else [])])
                else:
                    target = child.module or ""
                out.append((target, func))
            elif isinstance(child, ast.Import):
                out.extend((a.name, func) for a in child.names)
            visit(child, inner)

    visit(ast.parse(path.read_text()), None)
    return out


def test_core_imports_nothing_above_it() -> None:
    stdlib = set(sys.stdlib_module_names)
    offenders = []
    lazy_seen = []
    for path in sorted(CORE.rglob("*.py")):
        for target, func in _imports(path):
            top = target.split(".")[0]
            if target.startswith("langchain_nemoguard.core") or top == "__future__" or top in stdlib:
                continue
            if top in CORE_THIRD_PARTY:
                continue
            if (path.name, func, target) == DECLARED_LAZY:
                lazy_seen.append(target)
                continue
            if func == "TYPE_CHECKING" and path.name == DECLARED_TYPING[0] and target in DECLARED_TYPING[1]:
                continue
            offenders.append(f"{path.relative_to(REPO)}: {target} (in {func or 'module'})")
    assert offenders == []
    assert lazy_seen == ["langchain_nemoguard.langchain.runnable"]  # the one declared exception, still lazy


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPO,
    )
    return set(out.stdout.split())


HEAVY = (
    "starlette",
    "uvicorn",
    "vllm",
    "prometheus_client",
    "opentelemetry",
    "langchain_nemoguard.service",
    "langchain_nemoguard.simulator.server",
    "langchain_nemoguard.cli.vllm_server",
)


@pytest.mark.parametrize(
    "code",
    [
        "import langchain_nemoguard",
        "from langchain_nemoguard import NemoGuard, Policy, Verdict",
        "import contextlib\nfrom langchain_nemoguard.cli.main import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(None): main(['--help'])",
    ],
    ids=["import", "core names", "nemoguard --help"],
)
def test_start_up_loads_neither_the_simulator_server_nor_vllm_tooling(code: str) -> None:
    loaded = _modules_after(code)
    assert [m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY] == []


def test_help_loads_no_core_http_stack_at_all() -> None:
    code = (
        "import contextlib\nfrom langchain_nemoguard.cli.main import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(None): main(['--help'])"
    )
    loaded = _modules_after(code)
    assert not {"aiohttp", "httpx", "PIL", "pydantic", "langchain_nemoguard.core.guard"} & loaded


def _public_classes() -> list[type]:
    from langchain_nemoguard.core.conversation import Conversation, Turn
    from langchain_nemoguard.core.errors import (
        ContentBlockedError,
        GuardUnavailableError,
        PolicyNotFoundError,
    )
    from litellm_hook import NemoGuardrail

    names = [
        n
        for n in PUBLIC
        if n[0].isupper() and not n.endswith("Error") and n not in ("Action", "ErrorCode", "Outcome", "Stage")
    ]
    errors = [
        ContentBlockedError,
        GuardUnavailableError,
        PolicyNotFoundError,
    ]  # the ones with their own __init__
    return [getattr(langchain_nemoguard, n) for n in names] + [Conversation, Turn, NemoGuardrail, *errors]


@pytest.mark.parametrize("cls", _public_classes(), ids=lambda c: c.__name__)
def test_public_constructors_document_their_arguments(cls: type) -> None:
    doc = inspect.getdoc(cls) or ""
    init_doc = inspect.getdoc(cls.__init__) if "__init__" in vars(cls) else ""
    text = doc + "\n" + (init_doc or "")
    assert "Args:" in text, f"{cls.__name__} has no Google-style Args: section"
    if dataclasses.is_dataclass(cls):
        params = [f.name for f in dataclasses.fields(cls) if f.init]
    elif hasattr(cls, "model_fields"):
        params = [n for n in cls.model_fields if n in vars(cls).get("__annotations__", {})]  # its own
    else:
        params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
    missing = [p for p in params if f"{p}:" not in text and f"{p} (" not in text]
    assert missing == [], f"{cls.__name__}: undocumented arguments {missing}"


def _hooks() -> list[object]:
    from langchain_nemoguard import NemoGuardMiddleware
    from litellm_hook import NemoGuardrail

    middleware = [
        "before_model",
        "abefore_model",
        "wrap_model_call",
        "awrap_model_call",
        "after_model",
        "aafter_model",
        "wrap_tool_call",
        "awrap_tool_call",
        "before_agent",
        "abefore_agent",
        "after_agent",
        "aafter_agent",
    ]
    litellm = [
        "apply_guardrail",
        "async_pre_call_hook",
        "async_moderation_hook",
        "async_post_call_success_hook",
        "async_post_call_streaming_iterator_hook",
        "async_pre_call_deployment_hook",
        "runs_post_call_deployment_hook",
    ]
    return [getattr(NemoGuardMiddleware, n) for n in middleware] + [
        getattr(NemoGuardrail, n) for n in litellm
    ]


@pytest.mark.parametrize("hook", _hooks(), ids=lambda h: h.__qualname__)
def test_framework_hooks_document_their_arguments(hook: object) -> None:
    doc = inspect.getdoc(hook) or ""
    assert "Args:" in doc
    params = [p for p in inspect.signature(hook).parameters if p != "self"]  # type: ignore[arg-type]
    assert [p for p in params if f"{p}:" not in doc] == []
