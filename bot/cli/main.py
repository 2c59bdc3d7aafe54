"""The `sluice` command line: plan, promote, roll back, inspect and clean environments, and run the
service. One module per command family; this one is the group.

It runs exactly the runner steps the bot's worker runs for a merge request. Errors a user can
cause are shown as one message naming the file, line or command; never as a traceback.
"""

from __future__ import annotations

import click

from bot.cli import environments, inspect, planning, project, server
from bot.cli.options import console, errors


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sluice")
def main() -> None:
    """Sluice: plan, build, test and promote SQL models in zero-copy environments.

    Start with `sluice init` for a new project, or `sluice demo` to watch the whole flow on a
    sample shop project.
    """
    for stream in (console, errors):
        if not stream.is_terminal:
            stream.width = 160  # logs and pipes: keep table rows on one line



for command in (project.init, project.demo, planning.plan, planning.test, environments.promote,
                environments.rollback, environments.env, environments.janitor, inspect.diff,
                inspect.lineage, inspect.audit, server.serve, server.worker, server.bootstrap):
    main.add_command(command)


if __name__ == "__main__":
    main()
