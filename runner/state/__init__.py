"""The state store: records (plain values), schema and migrations, the store, and named locks."""
