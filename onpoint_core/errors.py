"""One exception type for bad user input, so the CLI can print one line instead of a traceback."""


class OnPointError(Exception):
    """A problem with the user's input: message names the file, the video and the problem."""


def fail(path, problem, video=None):
    """Raise an OnPointError whose message reads `path: [video id: ]problem`."""
    where = f"{path}: " if path is not None else ""
    who = f"video {video}: " if video is not None else ""
    raise OnPointError(f"{where}{who}{problem}")


def friendly_errors(func):
    """Decorator for click commands: an OnPointError becomes one 'Error: ...' line and exit code 1."""
    import functools

    import click

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except OnPointError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper
