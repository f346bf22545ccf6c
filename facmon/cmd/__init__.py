"""The command line: it only wires the packages together."""
