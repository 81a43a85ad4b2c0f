"""`pos-ledger bridge`: a typer group that runs the bridge when called with its options and no
subcommand, and has subcommands that act on the same journal:

    pos-ledger bridge --server URL --store S --terminal-id T --key FILE --printer URI [--station ...]
    pos-ledger bridge reprint POSITION [--journal PATH] [--station STATION]
    pos-ledger bridge --server URL --store S --terminal-id T --key FILE report x|z [--shift ID | --day DATE]

(Click parses a group's options before its subcommand's name, so the options that say which
store and terminal come first, the subcommand after.) Exit codes: 0 stopped by a signal,
1 the server failed, 2 bad input (a flag, the key, the printer URI, the journal), 3 the
server refused the terminal (unknown or revoked).
"""

from __future__ import annotations

import base64
import binascii
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_JOURNAL = Path("./var/bridge-journal.sqlite3")

app = typer.Typer(help="Follow a store's log and drive an ESC/POS printer (receipts, kitchen tickets, "
                       "slips, X/Z reports), each job exactly once.",
                  invoke_without_command=True, no_args_is_help=False, add_completion=False)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=code)


@dataclass
class Options:
    server: str | None
    store: str | None
    terminal_id: str | None
    key: Path | None
    printer: str | None
    stations: list[str]
    journal: Path
    start_from: int | None


def read_key(path: Path) -> bytes:
    """The seed `pos-ledger keygen` writes (base64 of 32 bytes); a clear error otherwise."""
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise _fail(f"cannot read the key file {path}: {error}") from None
    try:
        seed = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(f"{path} is not a key written by `pos-ledger keygen` (base64 of a 32-byte seed)") from None
    if len(seed) != 32:
        raise _fail(f"{path} holds {len(seed)} bytes, not a 32-byte Ed25519 seed")
    return seed


def _client(options: Options) -> Any:
    from hardware_bridge.client import StoreClient

    missing = [flag for flag, value in (("--server", options.server), ("--store", options.store),
                                        ("--terminal-id", options.terminal_id), ("--key", options.key))
               if not value]
    if missing:
        raise _fail(f"missing {', '.join(missing)}")
    assert options.server and options.store and options.terminal_id and options.key
    if not options.server.startswith(("http://", "https://")):
        raise _fail(f"--server must be an http(s) URL, got {options.server!r}")
    return StoreClient(options.server, options.store, options.terminal_id, read_key(options.key))


@app.callback()
def bridge(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option(help="The pos-ledger server's base URL.")] = None,
    store: Annotated[str | None, typer.Option(help="The store whose log to follow.")] = None,
    terminal_id: Annotated[str | None, typer.Option(help="The bridge's registered terminal id.")] = None,
    key: Annotated[Path | None, typer.Option(help="The terminal's key file (as `pos-ledger keygen` writes it).")] = None,
    printer: Annotated[str | None, typer.Option(help="tcp://HOST:PORT, usb:VID:PID, serial:/dev/..., file:PATH or dummy.")] = None,
    station: Annotated[list[str] | None, typer.Option(help="What this printer prints: receipt (default), kitchen (every line) or kitchen:CATEGORY; repeatable.")] = None,
    journal: Annotated[Path, typer.Option(help="The local print journal (SQLite).")] = DEFAULT_JOURNAL,
    start_from: Annotated[int | None, typer.Option("--from", min=1, help="With an empty journal, start at this log position (default: the current end).")] = None,
) -> None:
    """Run the bridge (with no subcommand), or act on its journal (reprint, report)."""
    options = Options(server, store, terminal_id, key, printer, station or ["receipt"], journal, start_from)
    ctx.obj = options
    if ctx.invoked_subcommand is None:
        _run(options)


def _run(options: Options) -> None:
    from hardware_bridge.bridge import Bridge, BridgeConfig, parse_station
    from hardware_bridge.client import BridgeError, NotAuthorized
    from hardware_bridge.journal import Journal, JournalError
    from hardware_bridge.printers import BadPrinterUri, open_printer

    if not options.printer:
        raise _fail("missing --printer")
    try:
        printer = open_printer(options.printer)
        stations = list(dict.fromkeys(parse_station(s) for s in options.stations))
    except (BadPrinterUri, BridgeError) as error:
        raise _fail(str(error)) from None
    client = _client(options)
    assert options.store is not None
    try:
        journal = Journal(options.journal)
    except Exception as error:
        raise _fail(f"cannot open the journal {options.journal}: {error}") from None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    runner = Bridge(BridgeConfig(options.store, printer.uri, stations, options.start_from), client, printer, journal,
                    on_job=typer.echo)
    try:
        cursor = runner.prepare()
    except NotAuthorized as error:
        raise _fail(str(error), 3) from None
    except JournalError as error:
        raise _fail(str(error)) from None
    except BridgeError as error:
        raise _fail(str(error), 1) from None
    typer.echo(f"bridge: store {options.store} after position {cursor}, printer {printer.uri}, "
               f"stations {', '.join(stations)}, journal {options.journal}")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: runner.stop_event.set())
    runner.start()
    while not runner.stop_event.wait(0.5):
        pass
    runner.stop()
    journal.close()
    client.close()
    if runner.fatal is not None:
        code = 3 if isinstance(runner.fatal, NotAuthorized) else 1
        raise _fail(str(runner.fatal) or type(runner.fatal).__name__, code)


@app.command()
def reprint(
    ctx: typer.Context,
    position: Annotated[int, typer.Argument(min=1, help="The log position whose job(s) to print again.")],
    journal: Annotated[Path | None, typer.Option(help="The print journal (default: the group's --journal).")] = None,
    station: Annotated[str | None, typer.Option(help="Only this station's job (default: every station's).")] = None,
) -> None:
    """Queue a marked copy ("REPRINT n") of what was printed for POSITION; the running bridge prints it."""
    from hardware_bridge.journal import Journal, JournalError

    path = journal or (ctx.obj.journal if isinstance(ctx.obj, Options) else DEFAULT_JOURNAL)
    if not path.exists():
        raise _fail(f"no journal at {path}")
    book = Journal(path)
    try:
        jobs = book.reprint(position, station)
    except JournalError as error:
        raise _fail(str(error)) from None
    finally:
        book.close()
    if not jobs:
        raise _fail(f"nothing was printed for position {position}" + (f" on {station}" if station else ""), 1)
    for job in jobs:
        typer.echo(f"queued reprint {job.copy - 1} of position {position} on {job.station}")


@app.command()
def report(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="x (a shift so far) or z (a closed shift, or a day).")],
    shift: Annotated[str | None, typer.Option(help="The shift id.")] = None,
    day: Annotated[str | None, typer.Option(help="For a day's Z: the store's local day, YYYY-MM-DD.")] = None,
) -> None:
    """Fetch an X or Z report from the server and queue it on this printer's journal."""
    from hardware_bridge import render
    from hardware_bridge.client import BridgeError, NotAuthorized
    from hardware_bridge.journal import Journal, NewJob

    options: Options = ctx.obj
    if kind not in ("x", "z"):
        raise _fail("the report kind is x or z")
    if (shift is None) == (day is None) or (kind == "x" and shift is None):
        raise _fail("name one of --shift ID or --day YYYY-MM-DD (an X report is a shift's)")
    client = _client(options)
    try:
        found = client.report(kind, shift, day)
        store = client.store_info()
    except NotAuthorized as error:
        raise _fail(str(error), 3) from None
    except BridgeError as error:
        raise _fail(str(error), 1) from None
    finally:
        client.close()
    found.setdefault("kind", kind.upper())
    book = Journal(options.journal)
    station = f"report:{kind}:{shift or day}"
    book.record_extra(int(found.get("chain_position", 0)) or 1,
                      [NewJob(station, f"{kind}_report", render.shift_report(store, found))])
    book.close()
    typer.echo(f"queued the {kind.upper()} report of {shift or day} (chain position {found.get('chain_position')})")
