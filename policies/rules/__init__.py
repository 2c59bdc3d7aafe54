"""The built-in rules, one module per concern, each a pure function from facts to findings."""
