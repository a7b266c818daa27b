"""The exit codes of ``python -m client``: scripts rely on them, so a turn's outcome is one of them."""

OK, TURN_FAILED, USAGE, REFUSED, LOST = 0, 1, 2, 3, 4
INTERRUPTED_TWICE = 130  # the shell's convention for Ctrl-C
