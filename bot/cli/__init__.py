"""The `sluice` command: `main.py` is the group; one module per command family."""
