"""`pos-ledger projections status|run|rebuild [--store S] [--db URL]` (imports stay inside commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Read models (projections) of the log: where they stand, catch up, rebuild from zero.",
                  no_args_is_help=True, add_completion=False)

Store = Annotated[str | None, typer.Option("--store", help="One store id (default: every store).")]
Db = Annotated[str | None, typer.Option("--db", help="SQLite path or postgresql:// URL [env POS_LEDGER_DB].")]
Name = Annotated[list[str] | None, typer.Option("--projection", help="Only this projection (repeatable).")]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def _open(db: str | None) -> tuple[Any, Any]:
    from api.settings import Settings
    from pos_ledger.ledger import Ledger
    from projections.db import ReadDatabase
    from projections.runner import LedgerLog, ProjectionRunner

    settings = Settings.from_env(database=db)
    if "://" not in settings.database and not Path(settings.database).exists():
        raise _fail(f"no database at {settings.database}")
    try:
        ledger = Ledger(settings.database, settings.server_seed)
        runner = ProjectionRunner(ReadDatabase(settings.database), LedgerLog(ledger))
    except Exception as error:  # an unreachable database or a bad URL: say so, no traceback
        raise _fail(f"cannot open the ledger: {error}") from None
    return ledger, runner


def _stores(runner: Any, store: str | None) -> list[str]:
    from pos_ledger.errors import StoreNotFound

    stores: list[str] = runner.source.store_ids()
    if store is None:
        return stores
    if store not in stores:
        raise _fail(str(StoreNotFound(f"no store {store!r}")))
    return [store]


def _names(runner: Any, names: list[str] | None) -> list[str] | None:
    for name in names or []:
        if name not in runner.by_name:
            raise _fail(f"no projection {name!r}; there are {', '.join(runner.by_name)}")
    return names or None


def _close(ledger: Any, runner: Any) -> None:
    runner.db.close()
    ledger.close()


@app.command()
def status(store: Store = None, db: Db = None) -> None:
    """Each projection's position, the chain length, the lag and the error that stopped it."""
    from rich.console import Console
    from rich.table import Table

    ledger, runner = _open(db)
    try:
        table = Table("store", "projection", "position", "chain length", "lag", "error")
        failed = False
        for store_id in _stores(runner, store):
            for s in runner.status(store_id):
                failed = failed or s.error is not None
                label = s.name + (" (rebuilding)" if s.rebuilding else "")
                table.add_row(store_id, label, str(s.position), str(s.chain_length), str(s.lag), s.error or "")
        Console().print(table)
    finally:
        _close(ledger, runner)
    if failed:
        raise typer.Exit(code=1)


def _follow(runner: Any, stores: list[str], names: list[str] | None, verb: str, retry: bool) -> list[str]:
    """Run the stores to their chain heads with a progress bar; the errors that stopped projections."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    errors = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]} events/s"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns) as progress:
        for store_id in stores:
            positions = runner.positions(store_id)
            chosen = names or list(runner.by_name)
            done = min(positions[n][0] for n in chosen)
            length = runner.source.chain_length(store_id)
            task = progress.add_task(f"{verb} {store_id}", total=max(length, 1), completed=done, rate="-")

            def advance(count: int, task: Any = task) -> None:
                progress.advance(task, count)
                speed = progress.tasks[task].speed
                progress.update(task, rate=f"{speed:,.0f}" if speed else "-")

            runner.run_store(store_id, names=chosen, retry_failed=retry, on_progress=advance)
            progress.update(task, completed=max(length, 1))
            errors += [f"{store_id}/{s.name}: {s.error}" for s in runner.status(store_id)
                       if s.error is not None and s.name in chosen]
    return errors


@app.command()
def run(store: Store = None, db: Db = None, projection: Name = None) -> None:
    """Catch the projections up with the log (retrying any that stopped on an error)."""
    ledger, runner = _open(db)
    try:
        errors = _follow(runner, _stores(runner, store), _names(runner, projection), "catching up", True)
    finally:
        _close(ledger, runner)
    for error in errors:
        typer.secho(f"stopped: {error}", fg=typer.colors.RED, err=True)
    if errors:
        raise typer.Exit(code=1)


@app.command()
def rebuild(store: Store = None, db: Db = None, projection: Name = None) -> None:
    """Empty the read models and fold the whole log again; run it again after a crash to resume."""
    ledger, runner = _open(db)
    try:
        stores = _stores(runner, store)
        names = _names(runner, projection)
        for store_id in stores:
            if not runner.start_rebuild(store_id, names):
                typer.echo(f"{store_id}: resuming the rebuild that was under way")
        errors = _follow(runner, stores, names, "rebuilding", False)
        for store_id in stores:
            runner.finish_rebuild(store_id, names)
    finally:
        _close(ledger, runner)
    for error in errors:
        typer.secho(f"stopped: {error}", fg=typer.colors.RED, err=True)
    if errors:
        raise typer.Exit(code=1)
