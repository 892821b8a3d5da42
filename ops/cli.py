"""The operator CLI: one entry point, a command per job, ``--help`` on each.

It builds the app's ``Services`` through ``app.bootstrap`` from the same settings the function app
reads (the environment, filling in from a local.settings.json-style file), so it works on both
backends: ``--backend embedded`` (the local host's data folder) or ``--backend azure`` (Cosmos DB
and Service Bus, by the COSMOS and SERVICEBUS connections). Everything it does goes through the
kernel's ports (``app.operations``); the API keeps running meanwhile.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from app.bootstrap import Services, bootstrap, settings_from_environment
from app.operations import RebuildProgress, ServiceOperations
from app.settings import SERVICE_NAMES, ServiceName, SettingsError, settings_file_values

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False,
                  rich_markup_mode="markdown",  # joins the docstrings' wrapped lines
                  pretty_exceptions_enable=False)
letters_app = typer.Typer(help="Dead letters: events and messages that could not be processed, "
                          "parked by the service or dead-lettered by the broker.",
                          no_args_is_help=True, rich_markup_mode="markdown")
app.add_typer(letters_app, name="deadletters")

console = Console()
ServiceOption = Annotated[Literal["orders", "payments"],
                          typer.Argument(help="the service: orders or payments")]


@dataclass
class _Context:
    overrides: dict[str, str]
    defaults: dict[str, str]
    services: Services | None = None
    opened: list[Services] = field(default_factory=list)

    def get(self) -> Services:
        if self.services is None:
            try:
                settings = settings_from_environment(self.overrides, self.defaults)
            except SettingsError as error:
                raise typer.BadParameter(str(error)) from None
            self.services = bootstrap(settings)
        return self.services

    def close(self) -> None:
        if self.services is not None:
            self.services.close()


def _default_settings_file() -> Path | None:
    for name in ("local.settings.json", "local.settings.example.json"):
        if Path(name).exists():
            return Path(name)
    return None


@app.callback()
def configure(
    ctx: typer.Context,
    backend: Annotated[Literal["embedded", "azure"] | None, typer.Option(
        help="embedded: the local host's SQLite files and bus; azure: Cosmos DB and Service "
        "Bus (COSMOS, SERVICEBUS). Default: the BACKEND setting")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="the embedded data folder (default: EMBEDDED_DATA_DIR or .data)")] = None,
    settings: Annotated[Path | None, typer.Option(
        help="settings file whose Values fill in what the environment does not set "
        "(default: local.settings.json, else local.settings.example.json)")] = None,
) -> None:
    """Operate the Orders and Payments services."""
    overrides: dict[str, str] = {}
    if backend is not None:
        overrides["BACKEND"] = backend
    if data_dir is not None:
        overrides["EMBEDDED_DATA_DIR"] = str(data_dir)
    source = settings or _default_settings_file()
    try:
        defaults = settings_file_values(source) if source is not None else {}
    except SettingsError as error:
        raise typer.BadParameter(str(error), param_hint="--settings") from None
    state = _Context(overrides, defaults)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _operations(ctx: typer.Context, service: ServiceName) -> ServiceOperations:
    state: _Context = ctx.obj
    return state.get().operations(service)


def _services_of(ctx: typer.Context, service: str | None) -> list[ServiceName]:
    if service is not None:
        return [name for name in SERVICE_NAMES if name == service]
    state: _Context = ctx.obj
    return list(state.get().settings.services)


# -- streams ----------------------------------------------------------------------------------


@app.command()
def streams(
    ctx: typer.Context, service: ServiceOption,
    after: Annotated[str | None, typer.Option(help="list the streams after this id")] = None,
    limit: Annotated[int, typer.Option(min=1, help="how many")] = 50,
) -> None:
    """List the service's streams (id order), with their version and number of commits."""
    listed = _operations(ctx, service).streams(after, limit)
    table = Table("stream", "version", "commits", title=f"{service}: streams")
    for info in listed:
        table.add_row(info.stream_id, str(info.version), str(info.commits))
    console.print(table)
    if len(listed) == limit:
        console.print(f"more: --after {listed[-1].stream_id}")


@app.command()
def stream(ctx: typer.Context, service: ServiceOption,
           stream_id: Annotated[str, typer.Argument(help="e.g. order-<orderId>")]) -> None:
    """Show one stream's commits: versions, events, correlation and causation."""
    commits = _operations(ctx, service).commits(stream_id)
    if not commits:
        console.print(f"no stream {stream_id!r} in {service}")
        raise typer.Exit(1)
    table = Table("versions", "events", "committed at", "correlation", "causation",
                  title=f"{stream_id}: {len(commits)} commit(s)")
    for commit in commits:
        versions = (str(commit.version) if commit.first_version == commit.version
                    else f"{commit.first_version}-{commit.version}")
        table.add_row(versions, ", ".join(e.type for e in commit.events), commit.committed_at,
                      commit.correlation_id, commit.causation_id)
    console.print(table)


# -- consumers --------------------------------------------------------------------------------


@app.command()
def consumers(ctx: typer.Context, service: Annotated[
        str | None, typer.Argument(help="orders or payments (default: both)")] = None) -> None:
    """Each change-feed consumer's checkpoint and lag (commits and events behind), per feed
    range."""
    table = Table("service", "consumer", "range", "checkpoint", "owner", "commits behind",
                  "events behind", title="change-feed consumers")
    for name in _services_of(ctx, service):
        for lag in _operations(ctx, name).lag():
            for feed_range in lag.ranges:
                checkpoint = feed_range.checkpoint or "(never read)"
                table.add_row(name, lag.consumer, feed_range.feed_range,
                              checkpoint if len(checkpoint) <= 24 else checkpoint[:21] + "...",
                              feed_range.owner or "-", str(feed_range.commits_behind),
                              str(feed_range.events_behind))
    console.print(table)


# -- rebuild ----------------------------------------------------------------------------------


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} streams/s" if speed else "- streams/s")


@app.command()
def rebuild(ctx: typer.Context, service: ServiceOption, restart: Annotated[
        bool, typer.Option(help="start over instead of resuming an interrupted rebuild")] = False
            ) -> None:
    """Rebuild the service's projection from its streams, while the API runs. Interrupted
    (Ctrl-C, a crash), it resumes where it was on the next run."""
    operations = _operations(ctx, service)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{service} views", total=None)

        def update(at: RebuildProgress) -> None:
            progress.update(task, total=at.total, completed=at.done)

        done = operations.rebuild(update, restart=restart)
    resumed = f" (resumed after {done.resumed_after})" if done.resumed_after else ""
    console.print(f"rebuilt {done.done} view(s) of {service} from {done.events} event(s)"
                  f"{resumed}")


# -- dead letters -----------------------------------------------------------------------------


@letters_app.command("list")
def list_letters(ctx: typer.Context, service: Annotated[
        str | None, typer.Argument(help="orders or payments (default: both)")] = None,
                 limit: Annotated[int, typer.Option(min=1)] = 100) -> None:
    """List dead letters with their reason: parked by a consumer, or in the dead-letter queue
    of the entity the service consumes."""
    table = Table("service", "kind", "subject", "reason", title="dead letters")
    table.add_column("id", overflow="fold", ratio=2)
    table.add_column("consumer / entity", overflow="fold")
    count = 0
    for name in _services_of(ctx, service):
        for letter in _operations(ctx, name).letters(limit):
            table.add_row(name, letter.kind, letter.subject, letter.reason, letter.id,
                          letter.consumer)
            count += 1
    console.print(table if count else "no dead letters")


def _targets(operations: ServiceOperations, letter_id: str | None, every: bool) -> list[str]:
    if every == (letter_id is not None):
        raise typer.BadParameter("give a dead letter's id or --all, not both")
    return [letter.id for letter in operations.letters(10_000)] if every else [str(letter_id)]


LetterId = Annotated[str | None, typer.Argument(
    help="the id `deadletters list` shows (omit with --all)")]
Every = Annotated[bool, typer.Option("--all", help="every dead letter of the service")]


@letters_app.command()
def replay(ctx: typer.Context, service: ServiceOption, letter_id: LetterId = None,
           every: Every = False) -> None:
    """Replay dead letters: processed again by their consumer; removed only when that
    succeeds, parked again with the new reason when it fails again."""
    operations = _operations(ctx, service)
    failed = 0
    for target in _targets(operations, letter_id, every):
        outcome = operations.replay(target)
        failed += not outcome.ok
        console.print(f"{'ok' if outcome.ok else 'FAILED'}  {target}: {outcome.detail}")
    if failed:
        raise typer.Exit(1)


@letters_app.command()
def discard(ctx: typer.Context, service: ServiceOption, letter_id: LetterId = None,
            every: Every = False) -> None:
    """Discard dead letters for good (after reading them: nothing keeps a copy)."""
    operations = _operations(ctx, service)
    missing = 0
    for target in _targets(operations, letter_id, every):
        removed = operations.discard(target)
        missing += not removed
        console.print(f"{'discarded' if removed else 'not found'}  {target}")
    if missing:
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted: a rebuild resumes where it was on the next run")
        sys.exit(130)
