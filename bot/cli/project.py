"""`sluice init` and `sluice demo`: starting a project, and watching the whole flow on a sample."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.cli.options import console, handle_errors


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default=None, help="Project name (default: the folder's name).")
@click.option("--git", "make_repository", is_flag=True,
              help="Also make DIRECTORY a git repository on branch main, with the files committed.")
@handle_errors
def init(directory: Path, name: str | None, make_repository: bool) -> None:
    """Start a project in DIRECTORY: a commented sluice.yml, a seed and an example model."""
    from bot.cli.scaffold import start_repository, write_scaffold

    written = write_scaffold(directory, name)
    for path in written:
        console.print(f"[green]wrote[/] {path}")
    if make_repository:
        console.print(start_repository(directory))
    elif not (directory / ".git").exists():
        console.print("Sluice works on git branches: run [bold]git init -b main[/] there and commit "
                      "(or `sluice init --git`).")
    console.print(f"Next: [bold]sluice plan prod --project {directory}[/]")



@click.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to create the sample repository (default: a new temporary folder).")
@handle_errors
def demo(directory: Path | None) -> None:
    """Run the whole merge-request flow on a sample shop project, in seconds."""
    from bot.demo import run_demo

    ok = run_demo(console, directory)
    if not ok:
        sys.exit(1)


