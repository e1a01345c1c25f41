"""Errors that the command-line interfaces turn into a one-line message and exit code 2."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad config, empty input).

    The CLI prints ``error: <message>`` and exits with code 2; ``--debug`` adds the traceback.
    The message must name the file/record/key concerned and say what to do.
    """
