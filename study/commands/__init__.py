"""The `rethink` command and its subcommands: parse, call a stage's entry, print."""
