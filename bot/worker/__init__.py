"""The dramatiq worker: event routing, the merge-request pipeline, merge and close handling, slash
commands, the sweeper and the janitor loop."""
