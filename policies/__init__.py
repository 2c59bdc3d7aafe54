"""Policy-as-code for Sluice: the rule engine, built-in rules and the default policy file."""
