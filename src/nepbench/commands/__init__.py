"""CLI sub-commands: each module here exposes `register(subparsers)` and is found by cli.py."""
