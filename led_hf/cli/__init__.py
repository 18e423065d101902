"""`led <command>`: one module per command, each exposing `main(argv) -> int`."""
