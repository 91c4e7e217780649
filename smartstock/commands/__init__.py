"""CLI subcommands; each module has `register(subparsers)` and imports heavy parts lazily."""
