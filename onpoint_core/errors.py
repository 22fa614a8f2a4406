"""One exception type for bad user input, so the CLI can print one line instead of a traceback."""


class OnPointError(Exception):
    """A problem with the user's input: message names the file, the video and the problem."""


def fail(path, problem, video=None):
    """Raise an OnPointError whose message reads `path: [video id: ]problem`."""
    where = f"{path}: " if path is not None else ""
    who = f"video {video}: " if video is not None else ""
    raise OnPointError(f"{where}{who}{problem}")
