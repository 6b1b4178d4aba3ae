"""The command line: Typer commands and everything printed with Rich. Thin: parse, call, render."""
