"""`python -m bot.cli`: the `sluice` command."""

from bot.cli.main import main

main()
