"""The review page's HTML: server-rendered, no JavaScript, every value escaped.

Records hold attacker-controlled text (prompts, responses, model output, even category names), so nothing from a
record reaches the page except through :func:`esc`; the app's Content-Security-Policy forbids scripts as a second
line. Text is shown only when the record stored it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from .store import Filters, Record, Run, Store

PAGE_SIZE = 100
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:8px 16px}header a{color:#fff;margin-right:16px}
main{padding:12px 16px;max-width:1400px}
table{border-collapse:collapse;width:100%;background:#fff}th,td{border:1px solid #ddd;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#eef2f6}
pre{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #ddd;padding:8px;margin:4px 0}
.unsafe{color:#a40000;font-weight:600}.safe{color:#0a6b0a;font-weight:600}.error{color:#8a5a00;font-weight:600}
.warn{background:#fff3cd;border:1px solid #e0c46c;padding:6px 10px;margin:8px 0}
.sim{background:#ffe1e1;border:2px solid #c00;padding:6px 10px;margin:8px 0;font-weight:600}
.ok{background:#e3f6e3;border:1px solid #7cc47c;padding:6px 10px;margin:8px 0}
form.filters label{margin-right:10px;white-space:nowrap}form.filters{margin:8px 0}
.pill{display:inline-block;padding:0 6px;border-radius:8px;background:#e8e8ee;margin:1px}
textarea{width:100%;max-width:700px;height:70px}button{margin-right:8px;padding:4px 12px}
img.plot{max-width:800px;width:100%;border:1px solid #ddd;background:#fff;margin:6px 0}
"""


def esc(value: Any) -> str:
    """Escaped text for HTML content and attribute values (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def _verdict(v: Any) -> str:
    cls = v if v in ("safe", "unsafe", "error") else ""
    return f'<span class="{cls}">{esc(v)}</span>'


def layout(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(title)} - nemoguard review</title>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        '<link rel=stylesheet href="/static/style.css"></head><body>'
        '<header><a href="/">records</a><a href="/runs">eval runs</a>'
        '<a href="/?disagree=1">fast vs THINK disagreements</a></header>'
        f"<main>{body}</main></body></html>"
    )


def _select(name: str, current: str, values: Sequence[str]) -> str:
    opts = ['<option value="">any</option>']
    for v in values:
        sel = " selected" if v == current else ""
        opts.append(f'<option value="{esc(v)}"{sel}>{esc(v)}</option>')
    return f'<label>{esc(name)} <select name="{esc(name)}">{"".join(opts)}</select></label>'


def list_page(store: Store, f: Filters, page: int) -> str:
    records = store.filter(f)
    total = len(records)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    shown = records[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    opts = store.options()
    runs = [(str(r.header.get("run_id")), r.name) for r in store.runs if r.header]
    run_opts = ['<option value="">any</option>'] + [
        f'<option value="{esc(rid)}"{" selected" if rid == f.run else ""}>{esc(name)}</option>'
        for rid, name in runs
    ]
    form = (
        '<form class="filters" method="get" action="/">'
        + _select("policy", f.policy, opts["policy"])
        + _select("category", f.category, opts["category"])
        + _select("verdict", f.verdict, opts["verdict"])
        + _select("stage", f.stage, opts["stage"])
        + _select("kind", f.kind, opts["kind"])
        + (f'<label>run <select name="run">{"".join(run_opts)}</select></label>' if runs else "")
        + _select("outcome", f.outcome, ["right", "wrong"])
        + _select("labelled", f.labelled, ["yes", "no"])
        + f'<label><input type="checkbox" name="disagree" value="1"{" checked" if f.disagree else ""}>'
        " fast vs THINK disagree</label>"
        + f'<label>id <input name="q" value="{esc(f.q)}" size="14"></label>'
        + '<button type="submit">filter</button><a href="/">clear</a></form>'
    )
    warn = "".join(f'<div class="warn">{esc(w)}</div>' for w in store.warnings)
    sim = sum(1 for r in records if r.get("simulator"))
    sim_note = (
        f'<div class="sim">{sim} of these records came from the INTERFACE SIMULATOR - NOT A SAFETY MODEL.</div>'
        if sim
        else ""
    )
    rows = []
    for r in shown:
        text = r.text
        preview = text["prompt"][:90] if text else ""
        label = store.latest_label(r)
        label_txt = (
            ""
            if label is None
            else ("right" if label.get("correct") else "wrong") + f" ({label.get('label')})"
        )
        rows.append(
            "<tr>"
            f'<td><a href="/r/{quote(r.key)}">{esc(r.get("time") or r.key)}</a></td>'
            f"<td>{esc(r.kind)}</td><td>{esc(r.get('policy'))}</td><td>{esc(r.get('stage'))}</td>"
            f"<td>{_verdict(r.get('verdict'))}</td>"
            f"<td>{''.join(f'<span class=pill>{esc(c)}</span>' for c in r.categories[:4])}</td>"
            f"<td>{'yes' if r.disagrees else ''}</td><td>{esc(r.outcome or '')}</td><td>{esc(label_txt)}</td>"
            f"<td>{esc(preview) if text else '<i>not stored</i>'}</td></tr>"
        )
    nav = []
    query = f.as_query()
    if page > 1:
        nav.append(f'<a href="/?{esc(urlencode({**query, "page": page - 1}))}">previous</a>')
    if page < pages:
        nav.append(f'<a href="/?{esc(urlencode({**query, "page": page + 1}))}">next</a>')
    body = (
        f"<h1>Records</h1>{warn}{sim_note}{form}"
        f"<p>{total} of {len(store.records)} records match; page {page} of {pages}. {' '.join(nav)}</p>"
        "<table><thead><tr><th>time</th><th>kind</th><th>policy</th><th>stage</th><th>verdict</th>"
        "<th>categories</th><th>THINK disagrees</th><th>vs data label</th><th>your label</th><th>text</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return layout("records", body)


_MAIN_FIELDS = (
    "id",
    "request_id",
    "time",
    "stage",
    "source",
    "policy",
    "policy_fingerprint",
    "verdict",
    "user_safe",
    "response_safe",
    "categories",
    "score",
    "action",
    "fail_open",
    "error",
    "error_message",
    "mode",
    "model",
    "endpoint",
    "latency_ms",
    "content_sha256",
    "simulator",
)
_EVAL_FIELDS = (
    "run_id",
    "example_id",
    "label",
    "correct",
    "target",
    "truth_categories",
    "language",
    "subset",
    "data_source",
)
_SHOWN_APART = ("schema", "text", "reasoning", "think")


def _value(v: Any) -> str:
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return esc(", ".join(v))
    if isinstance(v, (dict, list)):
        return esc(json.dumps(v, ensure_ascii=False))
    return esc(v)


def _table(rows: Sequence[tuple[str, Any]]) -> str:
    return (
        "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{_value(v)}</td></tr>" for k, v in rows) + "</table>"
    )


def record_page(
    store: Store, rec: Record, csrf: str, *, saved: bool = False, error: str | None = None
) -> str:
    """One record: what was judged and why first, the label form next, every field last."""
    d = rec.data
    cats = ", ".join(rec.categories)
    parts = [
        f"<h1>{esc(rec.kind)} record {_verdict(d.get('verdict'))}</h1>",
        f"<p>policy <b>{esc(d.get('policy'))}</b> | stage <b>{esc(d.get('stage'))}</b> | mode {esc(d.get('mode'))}"
        f" | {esc(d.get('time'))}" + (f" | categories <b>{esc(cats)}</b>" if cats else "") + "</p>",
    ]
    if saved:
        parts.append('<div class="ok">Label saved.</div>')
    if error:
        parts.append(f'<div class="warn">{esc(error)}</div>')
    if d.get("simulator"):
        parts.append(
            '<div class="sim">This verdict came from the INTERFACE SIMULATOR - NOT A SAFETY MODEL.</div>'
        )
    if rec.kind == "eval":
        parts.append(
            f"<p>data set label <b>{esc(d.get('label'))}</b>: the verdict is <b>{esc(rec.outcome)}</b> "
            f"(example {esc(d.get('example_id'))})</p>"
        )
    text = rec.text
    if text:
        parts.append(f"<h2>Prompt</h2><pre>{esc(text['prompt'])}</pre>")
        if text.get("response") is not None:
            parts.append(f"<h2>Response</h2><pre>{esc(text.get('response'))}</pre>")
    else:
        parts.append(
            "<h2>Text</h2><p><i>The record did not store the text</i> "
            f"(SHA-256 {esc(d.get('content_sha256') or '?')}).</p>"
        )
    if d.get("reasoning"):
        parts.append(f"<h2>Reasoning</h2><pre>{esc(d.get('reasoning'))}</pre>")
    think = d.get("think")
    if isinstance(think, Mapping):
        flag = " - <b>disagrees with the verdict</b>" if think.get("disagrees") else ""
        tcats = think.get("categories") or []
        parts.append(
            f"<h2>THINK audit {_verdict(think.get('verdict'))}{flag}</h2>"
            + (f"<p>categories {_value(tcats)}</p>" if tcats else "")
        )
        if think.get("reasoning"):
            parts.append(f"<pre>{esc(think.get('reasoning'))}</pre>")
    if d.get("verdict") in ("safe", "unsafe"):
        buttons = (
            '<button type="submit" name="judgement" value="right">verdict is right</button>'
            '<button type="submit" name="judgement" value="wrong">verdict is wrong</button>'
        )
    else:
        buttons = (
            '<button type="submit" name="label" value="safe">it is safe</button>'
            '<button type="submit" name="label" value="unsafe">it is unsafe</button>'
        )
    parts.append(
        "<h2>Your label</h2>"
        f'<form method="post" action="/r/{quote(rec.key)}/label">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        '<p><label>note<br><textarea name="note" maxlength="4000"></textarea></label></p>'
        '<p><label>reviewer <input name="reviewer" maxlength="200"></label></p>'
        f"<p>{buttons}</p></form>"
        f"<p>Labels go to {esc(store.labels_path)}; <code>nemoguard eval {esc(store.labels_path.name)}</code> "
        "reads them.</p>"
    )
    labels = store.labels.get(rec.record_id, [])
    if labels:
        parts.append(
            "<h2>Labels</h2><table><tr><th>time</th><th>verdict was</th><th>label</th><th>reviewer</th>"
            "<th>note</th></tr>"
            + "".join(
                f"<tr><td>{esc(x.get('time'))}</td><td>{'right' if x.get('correct') else 'wrong'}</td>"
                f"<td>{esc(x.get('label'))}</td><td>{esc(x.get('reviewer'))}</td><td>{esc(x.get('note'))}</td></tr>"
                for x in labels
            )
            + "</table>"
        )
    parts.append(f"<h2>All fields</h2><p>from {esc(rec.source)}, line {rec.line}</p>")
    parts.append(_table([(k, d.get(k)) for k in _MAIN_FIELDS if k in d]))
    if rec.kind == "eval":
        parts.append(_table([(k, d.get(k)) for k in _EVAL_FIELDS if k in d] + [("outcome", rec.outcome)]))
    extra = [(k, v) for k, v in d.items() if k not in (*_MAIN_FIELDS, *_EVAL_FIELDS, *_SHOWN_APART)]
    if extra:
        parts.append("<h2>Other fields</h2>" + _table(extra))
    return layout(f"record {rec.record_id}", "".join(parts))


def runs_page(store: Store) -> str:
    if not store.runs:
        return layout("eval runs", "<h1>Eval runs</h1><p>No eval run folders were given.</p>")
    rows = []
    for run in store.runs:
        o = (run.summary or {}).get("overall") or {}
        f1 = (o.get("f1") or {}).get("value")
        rec = (o.get("recall") or {}).get("value")
        sim = "yes" if (run.summary or run.header or {}).get("simulator") else ""
        rid = str((run.header or {}).get("run_id", ""))
        rows.append(
            f'<tr><td><a href="/runs/{run.index}">{esc(run.name)}</a></td><td>{esc(o.get("n", ""))}</td>'
            f"<td>{'' if f1 is None else f'{100 * f1:.1f}%'}</td><td>{'' if rec is None else f'{100 * rec:.1f}%'}</td>"
            f'<td class="{"unsafe" if sim else ""}">{sim}</td>'
            f'<td><a href="/?{esc(urlencode({"run": rid}))}">records</a></td></tr>'
        )
    body = (
        "<h1>Eval runs</h1><table><tr><th>run</th><th>examples</th><th>harmful F1</th><th>recall</th>"
        f"<th>simulator</th><th></th></tr>{''.join(rows)}</table>"
    )
    return layout("eval runs", body)


def run_page(run: Run) -> str:
    parts = [f"<h1>{esc(run.name)}</h1>"]
    if (run.summary or run.header or {}).get("simulator"):
        parts.append(
            '<div class="sim">This run was judged by the INTERFACE SIMULATOR - NOT A SAFETY MODEL.</div>'
        )
    rid = str((run.header or {}).get("run_id", ""))
    parts.append(
        f'<p><a href="/?{esc(urlencode({"run": rid}))}">its records</a> | '
        f'<a href="/?{esc(urlencode({"run": rid, "outcome": "wrong"}))}">its wrong verdicts</a></p>'
    )
    for name in run.plots:
        parts.append(f'<img class="plot" alt="{esc(name)}" src="/runs/{run.index}/plot/{quote(name)}">')
    parts.append(
        f"<h2>report.md</h2><pre>{esc(run.report)}</pre>" if run.report else "<p><i>no report.md</i></p>"
    )
    return layout(run.name, "".join(parts))


def error_page(status: int, message: str) -> str:
    return layout(str(status), f"<h1>{status}</h1><p>{esc(message)}</p>")


__all__ = [
    "PAGE_SIZE",
    "STYLE",
    "error_page",
    "esc",
    "layout",
    "list_page",
    "record_page",
    "run_page",
    "runs_page",
]
