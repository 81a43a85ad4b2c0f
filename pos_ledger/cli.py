"""The `pos-ledger` command: the one place that wires everything (imports stay inside commands)."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pos_ledger.payments.sandbox import DELAY_S_DEFAULT
from projections.cli import app as projections_app

if TYPE_CHECKING:
    from pos_ledger.audit import AuditReport
    from pos_ledger.ledger import Ledger

app = typer.Typer(help="pos-ledger: the signed, hash-chained ledger behind smart cash registers.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(projections_app, name="projections")


def _bridge_app() -> typer.Typer:
    from hardware_bridge.cli import app as bridge

    return bridge


app.add_typer(_bridge_app(), name="bridge")


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


@app.command()
def serve(
    db: Annotated[str | None, typer.Option(help="SQLite path or postgresql:// URL [env POS_LEDGER_DB; default ./var/pos-ledger.sqlite3]")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8000,
    demo: Annotated[bool, typer.Option("--demo/--no-demo", help="Seed the demo store (menu, a till, a day of sales) if absent.")] = False,
    psp_url: Annotated[str | None, typer.Option(envvar="POS_LEDGER_PSP_URL", help="Payment aggregator base URL; without one the sandbox is started on loopback.")] = None,
    public_url: Annotated[str | None, typer.Option(envvar="POS_LEDGER_PUBLIC_URL", help="This server's URL as the payment provider reaches it (its notifications go to <url>/v1/stores/<store>/psp/notifications); default http://<host>:<port>.")] = None,
    timeout_keep_alive: Annotated[int, typer.Option(min=1, max=3600, help="Seconds an idle keep-alive connection stays open.")] = 5,
    timeout_headers: Annotated[float, typer.Option(min=0.1, max=3600, help="Seconds a request's headers may take to arrive (from connect or the previous response); then the connection is closed.")] = 10.0,
    limit_concurrency: Annotated[int, typer.Option(min=1, help="Connections plus requests in flight at most; past it new requests get 503 at once.")] = 1000,
    h11_max_incomplete_event_size: Annotated[int, typer.Option(min=1024, help="Bytes of request line and headers buffered at most.")] = 16 * 1024,
    backlog: Annotated[int, typer.Option(min=1, help="Connections the kernel queues before they are accepted.")] = 2048,
    provider_concurrency: Annotated[int, typer.Option(min=1, max=1000, help="Requests dealing with the payment provider at once at most; more get 503 provider-busy at once.")] = 8,
) -> None:
    """Run the HTTP server: terminal ingest, cashier payments and shifts, back office, log reading."""
    from api.main import create_app
    from api.server import ConnectionLimits, uvicorn_config
    from api.settings import Settings
    from pos_ledger.payments.guard import ProviderGuard

    if db and "://" not in db:
        Path(db).resolve().parent.mkdir(parents=True, exist_ok=True)
    elif not db and not os.environ.get("POS_LEDGER_DB"):
        Path("./var").mkdir(exist_ok=True)
    from pos_ledger.payments.aggregator import AggregatorProvider

    sandbox = None
    if not psp_url:
        sandbox, psp_url = _start_sandbox()
        typer.echo(f"payments: sandbox provider at {psp_url} (set POS_LEDGER_PSP_URL to use another)")
    public_url = (public_url or f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}").rstrip("/")
    if not public_url.startswith(("http://", "https://")):
        raise _fail(f"--public-url must be an http(s) URL, got {public_url!r}")
    try:
        settings = Settings.from_env(database=db)
        application = create_app(settings, provider=AggregatorProvider(psp_url), public_url=public_url)
        application.state.payments.guard = ProviderGuard(concurrency_max=provider_concurrency)
        limits = ConnectionLimits(timeout_keep_alive, timeout_headers, limit_concurrency,
                                  h11_max_incomplete_event_size, backlog)
    except Exception as error:  # a bad URL or an unreachable database: say so, no traceback
        if sandbox is not None:
            sandbox.terminate()
        raise _fail(f"cannot open the ledger: {error}") from None
    if not os.environ.get("POS_LEDGER_ADMIN_TOKEN"):
        typer.echo(f"admin token (set POS_LEDGER_ADMIN_TOKEN to choose one): {settings.admin_token}")
    typer.echo(f"ledger: {settings.database}; listening on http://{host}:{port}")
    typer.echo(f"back office: {public_url}/ (user 'admin' with the bearer token as password, or add staff with "
               "'pos-ledger staff add')")
    if demo:
        threading.Thread(target=_seed_when_up, args=(host, port, settings.admin_token, settings.database),
                         daemon=True).start()
    try:
        import uvicorn

        # Open SSE streams (order boards, bridges) would hold a shutdown forever: they get 5 s.
        uvicorn.Server(uvicorn_config(application, host, port, limits, log_level="warning",
                                      timeout_graceful_shutdown=5)).run()
    finally:
        if sandbox is not None:
            sandbox.terminate()
            sandbox.wait(timeout=10)


def _start_sandbox() -> tuple[subprocess.Popen[str], str]:
    """`pos-ledger psp-sandbox` as a child process on a free loopback port; its URL from its first line."""
    import sys

    # The child exits when its stdin closes, so it never outlives this process (even on SIGKILL).
    process = subprocess.Popen([sys.executable, "-m", "pos_ledger.cli", "psp-sandbox", "--port", "0",
                                "--exit-with-stdin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "http://" not in line:
        process.terminate()
        raise _fail("the payment sandbox did not start")
    return process, line.rsplit(" ", 1)[-1].strip()


@app.command("psp-sandbox")
def psp_sandbox(
    host: Annotated[str, typer.Option(help="Address to listen on (keep it loopback).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 = any free port; the URL is printed).")] = 8765,
    delay_seconds: Annotated[float, typer.Option(min=0, max=600, help="How long magic amounts ..03 / ..04 keep the client waiting (default: past the server's 5 s provider timeout).")] = DELAY_S_DEFAULT,
    exit_with_stdin: Annotated[bool, typer.Option(help="Exit when stdin closes (when started by a parent process).")] = False,
) -> None:
    """Run the sandbox payment aggregator (signed notifications, magic amounts) for development and tests."""
    from pos_ledger.payments.sandbox import run

    run(host, port, delay_seconds, exit_with_stdin)


def _seed_when_up(host: str, port: int, admin_token: str, database: str) -> None:
    import httpx

    from pos_ledger.demo import seed_demo

    base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{base_url}/healthz", timeout=1.0)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    var_dir = Path("./var") if "://" in database else Path(database).resolve().parent
    try:
        typer.echo(seed_demo(base_url, admin_token, var_dir))
    except Exception as error:
        typer.secho(f"demo seeding failed: {error}", fg=typer.colors.RED, err=True)


@app.command()
def keygen(
    out: Annotated[Path, typer.Option(help="Where to write the private key seed (base64); the public key goes to OUT.pub.")] = Path("terminal.key"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing key file.")] = False,
) -> None:
    """Write a terminal Ed25519 key pair and print the public key to register."""
    from pos_ledger.simulate import TerminalKey

    if out.exists() and not force:
        raise _fail(f"{out} exists; pass --force to overwrite it")
    key = TerminalKey.generate(out.stem)
    out.write_text(base64.b64encode(key.seed).decode() + "\n")
    out.chmod(0o600)
    out.with_suffix(out.suffix + ".pub").write_text(key.public_key_b64 + "\n")
    typer.echo(key.public_key_b64)


@app.command()
def simulate(
    url: Annotated[str, typer.Option(help="Server base URL.")] = "http://127.0.0.1:8000",
    store: Annotated[str, typer.Option(help="Store to sell in (must exist and have a menu).")] = "demo",
    terminals: Annotated[int, typer.Option(min=1, max=100, help="Number of terminals to register and sell from.")] = 4,
    sales: Annotated[int, typer.Option(min=1, max=10_000_000, help="Number of sales to post.")] = 1000,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Events per POST.")] = 100,
    admin_token: Annotated[str | None, typer.Option(envvar="POS_LEDGER_ADMIN_TOKEN", help="Back-office token (to register the terminals).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for baskets and times.")] = 7,
) -> None:
    """Behave like N terminals selling from the menu: sign sales and post them in batches."""
    from datetime import date

    from rich.progress import Progress

    from pos_ledger.simulate import Client, Terminal, TerminalKey, sell

    if not admin_token:
        raise _fail("the admin token is needed to register terminals (--admin-token or POS_LEDGER_ADMIN_TOKEN)")
    client = Client(url, admin_token)
    try:
        info = client.store(store)
        if info is None:
            raise _fail(f"no store {store!r} at {url}")
        tills = [Terminal(TerminalKey.generate(f"sim-{int(time.time())}-{i}")) for i in range(terminals)]
        for till in tills:
            client.register_terminal(store, till.key, "simulated terminal")
        started = time.perf_counter()
        with Progress() as progress:
            task = progress.add_task(f"posting {sales} sales", total=sales)
            counts = sell(client, store, tills, sales, batch_size, currency=info["currency"],
                          timezone=info["timezone"], day=date.today(), seed=seed,
                          on_batch=lambda n: progress.advance(task, n))
        elapsed = time.perf_counter() - started
    except RuntimeError as error:
        raise _fail(str(error)) from None
    finally:
        client.close()
    typer.echo(f"{counts} in {elapsed:.2f}s ({sales / elapsed:,.0f} events/s)")


@app.command()
def chain(
    store: Annotated[str, typer.Option(help="Store id.")] = "demo",
    db: Annotated[str | None, typer.Option(help="Read this database directly [env POS_LEDGER_DB].")] = None,
    url: Annotated[str | None, typer.Option(help="Or ask a running server at this base URL.")] = None,
) -> None:
    """Print a store's chain head and length."""
    if url:
        import httpx

        response = httpx.get(f"{url}/v1/stores/{store}/chain", timeout=10)
        if response.status_code != 200:
            raise _fail(f"{response.status_code}: {response.text}")
        head, length = response.json()["head"], response.json()["length"]
    else:
        from api.settings import Settings
        from pos_ledger.errors import PosLedgerError
        from pos_ledger.ledger import Ledger

        settings = Settings.from_env(database=db)
        if "://" not in settings.database and not Path(settings.database).exists():
            raise _fail(f"no database at {settings.database}")
        ledger = Ledger(settings.database, settings.server_seed)
        try:
            raw_head, length = ledger.chain(store)
        except PosLedgerError as error:
            raise _fail(error.detail) from None
        finally:
            ledger.close()
        head = raw_head.hex()
    typer.echo(f"store {store}: head {head} length {length}")


@app.command()
def audit(
    store: Annotated[str | None, typer.Option(help="Store id [default demo]; with --export it need not be given (an export holds one store) and, if given, must be the export's.")] = None,
    db: Annotated[str | None, typer.Option(help="Database to audit [env POS_LEDGER_DB].")] = None,
    export: Annotated[Path | None, typer.Option("--export", help="Audit this export directory offline (no database).")] = None,
    server_key: Annotated[Path | None, typer.Option(help="The server key the log must carry: base64 public key, `seed:`+base64 seed, or the 32-byte seed file.")] = None,
    witness: Annotated[Path | None, typer.Option(help="A checkpoint file (pos-ledger checkpoint) the log must extend.")] = None,
    quick: Annotated[bool, typer.Option(help="With --export: chain, postings, order, manifest and anchors only (no signatures, no rules).")] = False,
) -> None:
    """Replay a store's log: recompute the chain, re-verify every signature, re-run the rules, refold balances.

    Exits 0 when everything matches, 1 naming the first position that does not (or the anchor that
    fails: server key, witness, manifest), 2 when the log, export or a file given cannot be read.
    """
    from rich.progress import Progress

    from pos_ledger.anchors import read_checkpoint, read_server_key
    from pos_ledger.audit import audit_export, audit_store
    from pos_ledger.errors import PosLedgerError

    try:
        key = read_server_key(server_key) if server_key else None
        checkpoint = read_checkpoint(witness) if witness else None
        if export is not None:
            if not export.is_dir():
                raise _fail(f"no export directory at {export}")
            total = _export_events(export)
            with Progress(disable=not _interactive()) as progress:
                task = progress.add_task(f"auditing {export}", total=total)
                report = audit_export(export, lambda n: progress.advance(task, n), server_key=key,
                                      witness=checkpoint, signatures=not quick)
            if store is not None and store != report.store_id:
                report.problems.append(f"the export holds store {report.store_id!r}, not {store!r}")
        else:
            store = store or "demo"
            ledger = _open_ledger(db)
            try:
                length = ledger.index.select_last_position(store)
                with Progress(disable=not _interactive()) as progress:
                    task = progress.add_task(f"auditing {store}", total=length)
                    report = audit_store(ledger, store, on_progress=lambda n: progress.advance(task, n),
                                         server_key=key, witness=checkpoint)
            finally:
                ledger.close()
    except PosLedgerError as error:
        raise _fail(error.detail) from None
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as error:  # rows the storage layer cannot even decode: say so, no traceback
        raise _fail(f"cannot read the log: {type(error).__name__}: {error}") from None
    _print_report(report)
    if not report.ok:
        raise typer.Exit(code=1)


def _interactive() -> bool:
    import sys

    return sys.stderr.isatty()


def _open_ledger(db: str | None) -> Ledger:
    from api.settings import Settings
    from pos_ledger.ledger import Ledger

    settings = Settings.from_env(database=db)
    if "://" not in settings.database and not Path(settings.database).exists():
        raise _fail(f"no database at {settings.database}")
    try:
        return Ledger(settings.database, settings.server_seed)
    except Exception as error:  # an unreachable database: say so, no traceback
        raise _fail(f"cannot open the ledger: {error}") from None


def _export_events(directory: Path) -> int | None:
    import json

    try:
        return int(json.loads((directory / "manifest.json").read_bytes())["events"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _print_report(report: AuditReport) -> None:
    typer.echo(f"store {report.store_id}: {report.length} events, head {report.head}, "
               f"{report.signatures_checked} signatures checked")
    for anchor in report.anchors:
        typer.echo(f"anchor: {anchor}")
    for problem in report.problems:
        typer.secho(f"PROBLEM: {problem}", fg=typer.colors.RED)
    if report.first_error:
        position, reason = report.first_error
        typer.secho(f"FIRST MISMATCH at position {position}: {reason}", fg=typer.colors.RED)
    if report.balances_compared:
        typer.echo(f"balances {'match' if report.balances_match else 'DO NOT match'} the served balances "
                   f"({len(report.balances)} accounts)")
    else:
        typer.echo(f"balances refolded ({len(report.balances)} accounts); not compared: the export does not "
                   "hold the whole log")


@app.command()
def checkpoint(
    store: Annotated[str, typer.Option(help="Store id.")] = "demo",
    db: Annotated[str | None, typer.Option(help="Database to read [env POS_LEDGER_DB].")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the checkpoint here (default: print it).")] = None,
) -> None:
    """Write a signed checkpoint of a store's chain (a witness to keep outside the database). Writes nothing to the log."""
    import json

    from pos_ledger.anchors import sign_checkpoint
    from pos_ledger.errors import PosLedgerError

    ledger = _open_ledger(db)
    try:
        head, length = ledger.chain(store)
        signed = sign_checkpoint(ledger.server_seed, store, length, head)
    except PosLedgerError as error:
        raise _fail(error.detail) from None
    finally:
        ledger.close()
    text = json.dumps(signed.as_dict(), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text)
    except OSError as error:
        raise _fail(f"cannot write {out}: {error.strerror}") from None
    typer.echo(f"store {store}: checkpoint at position {length}, head {head.hex()} -> {out}")


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="A new (or empty) directory to write the export into.")],
    store: Annotated[str, typer.Option(help="Store id.")] = "demo",
    db: Annotated[str | None, typer.Option(help="Database to read [env POS_LEDGER_DB].")] = None,
    from_position: Annotated[int, typer.Option("--from", min=1, help="First position (inclusive; default 1).")] = 1,
    to_position: Annotated[int | None, typer.Option("--to", min=1, help="Last position (inclusive; default the head).")] = None,
) -> None:
    """Export a store's log (events.jsonl, keys, CSV journals) with a manifest signed by the server key."""
    from rich.progress import Progress

    from pos_ledger.errors import PosLedgerError
    from pos_ledger.export import write_export

    ledger = _open_ledger(db)
    try:
        _, length = ledger.chain(store)
        last = length if to_position is None else to_position
        with Progress(disable=not _interactive()) as progress:
            task = progress.add_task(f"exporting {store}", total=max(0, last - from_position + 1))
            manifest = write_export(ledger, store, out, from_position, to_position,
                                    on_progress=lambda n: progress.advance(task, n))
    except PosLedgerError as error:
        raise _fail(error.detail) from None
    except OSError as error:
        raise _fail(f"cannot write the export: {error.strerror}: {error.filename}") from None
    finally:
        ledger.close()
    typer.echo(f"store {store}: positions {manifest['first_position']}..{manifest['last_position']} "
               f"({manifest['events']} events), head {manifest['chain_head']} -> {out}")


staff_app = typer.Typer(help="Back-office staff accounts (owner, manager, viewer, auditor).", no_args_is_help=True)
app.add_typer(staff_app, name="staff")


@staff_app.command("add")
def staff_add(
    store: Annotated[str, typer.Option(help="Store id.")],
    username: Annotated[str, typer.Option(help="Login name, unique in the store (lower-cased).")],
    role: Annotated[str, typer.Option(help="owner, manager, viewer or auditor.")],
    db: Annotated[str | None, typer.Option(help="SQLite path or postgresql:// URL [env POS_LEDGER_DB].")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin instead of a prompt.")] = False,
) -> None:
    """Give a person access to a store's back office; the password is asked for (never an argument)."""
    import sys

    from api.settings import Settings
    from pos_ledger.errors import PosLedgerError
    from pos_ledger.ledger import Ledger
    from pos_ledger.staff import StaffService
    from pos_ledger.staff_table import StaffTable

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    settings = Settings.from_env(database=db)
    if "://" not in settings.database and not Path(settings.database).exists():
        raise _fail(f"no database at {settings.database}")
    try:
        ledger = Ledger(settings.database, settings.server_seed)
    except Exception as error:
        raise _fail(f"cannot open the ledger: {error}") from None
    table = None
    try:
        ledger.store(store)
        table = StaffTable(settings.database)
        account = StaffService(table, ledger).add(store, username, password, role)
    except PosLedgerError as error:
        raise _fail(error.detail) from None
    finally:
        if table is not None:
            table.close()
        ledger.close()
    typer.echo(f"staff {account.username} ({account.role}) can now log in to store {store}")


@staff_app.command("list")
def staff_list(
    store: Annotated[str, typer.Option(help="Store id.")],
    db: Annotated[str | None, typer.Option(help="SQLite path or postgresql:// URL [env POS_LEDGER_DB].")] = None,
) -> None:
    """The store's staff accounts and roles."""
    from api.settings import Settings
    from pos_ledger.staff_table import StaffTable

    settings = Settings.from_env(database=db)
    if "://" not in settings.database and not Path(settings.database).exists():
        raise _fail(f"no database at {settings.database}")
    table = StaffTable(settings.database)
    try:
        for account in table.accounts(store):
            typer.echo(f"{account.username}\t{account.role}")
    finally:
        table.close()


if __name__ == "__main__":
    app()
