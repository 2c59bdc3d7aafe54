"""The service's own bookkeeping in the state store: the inbox, runs and their logs, report comments
and the audit log, with their own migrations (`schema.RECORDS`)."""
