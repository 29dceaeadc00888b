"""How staff read an analysis result in the admin: the score and level,
each signal's contribution with its rule, evidence path and sources, the
sanctions hits, the exposure table and the clusters, instead of raw JSON."""

from __future__ import annotations

from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe


def _table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> SafeString:
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((c,) for c in row)),) for row in rows)
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def _is_sanctions(signal: dict[str, Any]) -> bool:
    return signal.get("category") == "sanctions" or any(
        str(source.get("source", "")).startswith("ofac:") for source in signal.get("sources") or ()
    )


def render_result(result: dict[str, Any] | None) -> SafeString:
    if not result:
        return format_html("<p>{}</p>", "No result (yet).")
    parts = [
        format_html(
            "<p><strong>Risk score {} ({})</strong> for {} on {}, {} hop(s){}</p>",
            result.get("riskScore"),
            result.get("riskLevel"),
            result.get("address"),
            result.get("chain"),
            result.get("hops"),
            "" if result.get("known", True) else " (address never seen)",
        )
    ]
    signals = sorted(result.get("signals") or [], key=lambda s: -int(s.get("contribution") or 0))
    hits = [s for s in signals if _is_sanctions(s)]
    if hits:
        parts.append(format_html("<h4>{}</h4>", f"Sanctions hits ({len(hits)})"))
        parts.append(
            _table(
                ("severity", "direction", "hops", "counterparty", "sources"),
                [
                    (
                        s.get("severity"),
                        s.get("direction") or "owned",
                        s.get("hops"),
                        s.get("counterparty") or "",
                        ", ".join(f"{x.get('source')} {x.get('version')}" for x in s.get("sources") or ()),
                    )
                    for s in hits
                ],
            )
        )
    parts.append(format_html("<h4>{}</h4>", "Contributions to the score"))
    parts.append(
        _table(
            ("points", "rule", "signal", "amount", "share", "evidence path", "why"),
            [
                (
                    s.get("contribution"),
                    s.get("rule"),
                    " ".join(str(x) for x in (s.get("type"), s.get("category"), s.get("direction")) if x),
                    f"{s.get('amount')} {s.get('asset')}" if s.get("amount") else "",
                    f"{100 * s['share']:.1f} %" if isinstance(s.get("share"), int | float) else "",
                    " → ".join(s.get("path") or ()),
                    s.get("description") or "",
                )
                for s in signals
            ],
        )
    )
    exposure = result.get("exposure") or []
    if exposure:
        parts.append(format_html("<h4>{}</h4>", "Exposure"))
        parts.append(
            _table(
                ("category", "direction", "asset", "direct", "indirect", "min hops"),
                [
                    (
                        e.get("category"),
                        e.get("direction"),
                        e.get("asset"),
                        e.get("direct"),
                        e.get("indirect"),
                        e.get("minHops"),
                    )
                    for e in exposure
                ],
            )
        )
    clusters = result.get("clusters") or []
    if clusters:
        parts.append(format_html("<h4>{}</h4>", "Clusters"))
        parts.append(
            _table(
                ("heuristic", "size", "entity", "category"),
                [(c.get("heuristic"), c.get("size"), c.get("entity") or "", c.get("category") or "") for c in clusters],
            )
        )
    if result.get("truncated"):
        parts.append(format_html("<p>{}</p>", "The walk was cut at its limits: the figures cover what was visited."))
    return mark_safe("".join(parts))  # noqa: S308 - every part is built with format_html
