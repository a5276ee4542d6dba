"""Errors caused by what the user passed; the CLIs print them as one line and exit 2."""


class UsageError(Exception):
    """str(error) says what is wrong and how to fix it, on one line."""
