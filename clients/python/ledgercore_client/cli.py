"""The ``ledgercore`` command: login, candles, watch, query, analyse, balance, chat."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ledgercore_client import config
from ledgercore_client.client import AsyncClient
from ledgercore_client.errors import LedgerCoreError

out = Console(soft_wrap=True)
err = Console(stderr=True)
Command = Callable[[argparse.Namespace], Coroutine[Any, Any, None]]


def epoch_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time (UTC when no offset is given)."""
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def client_for(args: argparse.Namespace) -> AsyncClient:
    url, token = config.resolve(args.url, args.token)
    if not token:
        raise SystemExit("no token: pass --token, set LEDGERCORE_TOKEN or run `ledgercore login`")
    return AsyncClient(url, token, reconnect=getattr(args, "reconnect", False))


def write_rows(columns: list[str], rows: list[list[Any]], fmt: str, title: str | None = None) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps([dict(zip(columns, row, strict=True)) for row in rows]) + "\n")
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        table = Table(*columns, title=title)
        for row in rows:
            table.add_row(*("" if value is None else str(value) for value in row))
        out.print(table)


async def login(args: argparse.Namespace) -> None:
    url, token = config.resolve(args.url, args.token)
    if not token:
        token = (await asyncio.to_thread(input, "token: ")).strip()
    async with AsyncClient(url, token, reconnect=False) as client:
        await client.ping()
        path = config.save(url, token)
        err.print(f"signed in as {client.user_id} ({client.application_id}) at {url}; saved to {path}")


async def candles(args: argparse.Namespace) -> None:
    async with client_for(args) as client:
        answer = await client.candles(
            args.symbol,
            args.resolution,
            start=epoch_ms(args.start) if args.start else None,
            end=epoch_ms(args.end) if args.end else None,
            window=args.window,
        )
    columns = ["timestamp", "open", "high", "low", "close", "volume", "trades"]
    rows = [[candle[c] for c in columns] for candle in answer["candles"]]  # type: ignore[literal-required]
    if args.format == "table":
        rows = [[iso(row[0]), *row[1:]] for row in rows]
    write_rows(columns, rows, args.format, f"{answer['symbol']} {answer['resolution']}")


async def watch(args: argparse.Namespace) -> None:
    args.reconnect = True
    async with client_for(args) as client:
        await client.subscribe(f"market:{args.symbol}:{args.resolution}")
        seen = 0
        async for event in client.events():
            if event.name == "market_chart_initial_data" and event.data["series"]:
                last = event.data["series"][-1]
                out.print(f"{iso(last['timestamp'])} {args.symbol} close {last['close']} (history)")
            elif event.name == "market_chart_live_update":
                d = event.data
                out.print(
                    f"{iso(d['timestamp'])} {args.symbol} O {d['open']} H {d['high']} L {d['low']} "
                    f"C {d['close']} V {d['volume']} ({d['trades']} trades)"
                )
                seen += 1
                if args.count and seen >= args.count:
                    return


async def query(args: argparse.Namespace) -> None:
    fmt = "json" if args.json else "csv" if args.csv else "table"
    columns: list[str] = []
    rows: list[list[Any]] = []
    async with client_for(args) as client:
        with Progress(
            TextColumn("query"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]} rows"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("query", total=100, rows=0)
            async for event in client.query(args.sql):
                if event.name == "query_progress" and event.data.get("pct") is not None:
                    bar.update(task, completed=event.data["pct"])
                elif event.name == "query_response":
                    columns = [column["name"] for column in event.data["schema"]]
                    rows.extend(event.data["rows"])
                    bar.update(task, rows=len(rows))
                elif event.name == "query_completed":
                    bar.update(task, completed=100)
                    done = event.data
    write_rows(columns, rows, fmt)
    truncated = " (truncated)" if done.get("truncated") else ""
    err.print(f"{done['totalRows']} rows in {done['durationMs']} ms{truncated}")


async def analyse(args: argparse.Namespace) -> None:
    result: dict[str, Any] = {}
    async with client_for(args) as client:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), console=err, transient=True
        ) as bar:
            task = bar.add_task("analysis", total=100)
            async for event in client.analyse(args.address, args.chain, args.hops):
                if event.name == "address_analysis_progress":
                    bar.update(task, completed=event.data["pct"], description=event.data["stage"])
                elif event.name == "address_analysis_response":
                    result = event.data
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    out.print(
        f"[bold]{result['address']}[/bold] ({result['chain']}): risk score {result['riskScore']} "
        f"({result['riskLevel']}){'' if result['known'] else ', never seen'}"
    )
    table = Table("points", "severity", "reason", "hops", "amount", title="reasons")
    for signal in result.get("signals", []):
        entity = (signal.get("entity") or {}).get("name")
        reason = f"{signal['rule']}" + (f" ({entity})" if entity else "")
        amount = f"{signal['amount']} {signal['asset']}" if signal.get("amount") else ""
        table.add_row(str(signal["contribution"]), signal["severity"], reason, str(signal["hops"]), amount)
    out.print(table)


async def balance(args: argparse.Namespace) -> None:
    args.reconnect = args.watch
    async with client_for(args) as client:
        current = await client.get_balance()
        show = (
            (lambda d: sys.stdout.write(json.dumps(d) + "\n"))
            if args.json
            else (lambda d: out.print(f"{d['newBalance']} credits ({d['applicationId']})"))
        )
        show(dict(current))
        while args.watch:
            event = await client.next_event(
                "credit_balance_updated", "credits_deducted", "credits_granted", timeout=float("inf")
            )
            if event.name != "credit_balance_updated":
                what = event.data.get("action") or event.data.get("reason") or ""
                sign = "-" if event.name == "credits_deducted" else "+"
                err.print(f"{sign}{event.data['amount']} {what}")
            show(event.data)


async def chat(args: argparse.Namespace) -> None:
    async with client_for(args) as client:
        conversation: str | None = None
        questions = [" ".join(args.message)] if args.message else None
        while True:
            if questions is not None:
                if not questions:
                    return
                question = questions.pop()
            else:
                try:
                    question = await asyncio.to_thread(input, "> ")
                except EOFError:
                    return
                if not question.strip():
                    continue
            async for event in client.chat_events(question, conversation):
                if event.name == "chat_message":
                    sys.stdout.write(str(event.data.get("delta", "")))
                    sys.stdout.flush()
                elif event.name == "chat_response":
                    conversation = str(event.data["conversationId"])
                    sys.stdout.write("\n")
                    if args.sql and event.data.get("sql"):
                        err.print(f"[dim]{event.data['sql']}[/dim]")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="ledgercore",
        description="LedgerCore Realtime from the command line.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  ledgercore login --url http://127.0.0.1:8000 --token $TOKEN\n  ledgercore balance",
    )
    commands = main.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Command, help_text: str, example: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument(
            "--url", help=f"server URL (env LEDGERCORE_URL; default: the login's, else {config.DEFAULT_URL})"
        )
        sub.add_argument("--token", help="token (env LEDGERCORE_TOKEN; default: the login's)")
        sub.set_defaults(handler=handler)
        return sub

    command(
        "login",
        login,
        "Check a URL and token and store them for later commands (file mode 0600).",
        "ledgercore login --url http://127.0.0.1:8000 --token eyJhbGciOi...",
    )
    sub = command(
        "candles",
        candles,
        "Historical candles of a market.",
        "ledgercore candles BTC-USD --resolution 1h --from 2026-12-01T00:00 --to 2026-12-02T00:00 --format csv",
    )
    sub.add_argument("symbol", help="BASE-QUOTE, e.g. BTC-USD")
    sub.add_argument("--resolution", "-r", default="1m", help="100ms ... 1d (default 1m)")
    sub.add_argument("--from", dest="start", help="start: ISO time (UTC) or epoch ms")
    sub.add_argument("--to", dest="end", help="end (excluded): ISO time (UTC) or epoch ms")
    sub.add_argument("--window", help="instead of --from/--to: the last span, e.g. 24h")
    sub.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sub = command("watch", watch, "Live candles of a market as they form.", "ledgercore watch ETH-USD -r 1s")
    sub.add_argument("symbol")
    sub.add_argument("--resolution", "-r", default="1s")
    sub.add_argument("--count", type=int, default=0, help="stop after this many updates (default: never)")
    sub = command(
        "query",
        query,
        "Run a SQL query over the catalog, with a progress bar.",
        'ledgercore query "SELECT symbol, count(*) AS n FROM trades GROUP BY symbol" --csv',
    )
    sub.add_argument("sql")
    sub.add_argument("--csv", action="store_true", help="rows as CSV")
    sub.add_argument("--json", action="store_true", help="rows as a JSON array of objects")
    sub = command(
        "analyse",
        analyse,
        "Risk analysis of an address: progress, then the score and its reasons.",
        "ledgercore analyse 0x1111111111111111111111111111111111111111 --hops 3",
    )
    sub.add_argument("address")
    sub.add_argument("--chain", default="ethereum", choices=["ethereum", "bitcoin"])
    sub.add_argument("--hops", type=int, help="1-5 (default 2)")
    sub.add_argument("--json", action="store_true", help="the whole response as JSON")
    sub = command("balance", balance, "Your credit balance in the bound application.", "ledgercore balance --watch")
    sub.add_argument("--watch", action="store_true", help="keep printing it as it changes")
    sub.add_argument("--json", action="store_true", help="the balance event's payload as JSON lines")
    sub = command(
        "chat",
        chat,
        "Ask questions about the data; the answer streams in. Without a message: a prompt.",
        'ledgercore chat "how many trades of BTC-USD in the last hour?"',
    )
    sub.add_argument("message", nargs="*")
    sub.add_argument("--sql", action="store_true", help="also show the statement that answered")
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        asyncio.run(args.handler(args))
    except LedgerCoreError as exc:
        retry = f" (retry after {exc.retry_after:g} s)" if exc.retry_after is not None else ""
        err.print(f"[red]error {exc.code}[/red]: {exc.message}{retry}")
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
