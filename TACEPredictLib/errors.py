"""The one error boundary of every front end: the command line, the headless Slicer batch and the Slicer
module's Logic.

``explain(exc)`` turns an exception into what a user reads: an ``InputError`` (the case, the file or column,
the fix) and an exit code. InputErrors pass as they are; the failures a user's environment causes are named
(a full disk, a read-only or unwritable folder, a missing file, no network, too little memory, a file that is
not valid JSON / CSV, a model that cannot be fitted); anything else is an unexpected error that asks for
``--debug`` and a report. ``run(func)`` calls a command behind that boundary and prints one message on stderr,
with the traceback only under ``--debug`` (or ``TACEPREDICT_DEBUG=1``). ``user_errors`` is the same
boundary for callers that want exceptions (the Slicer Logic): every exception leaves it as an InputError.

Exit codes: 0 done, 1 done but some cases failed (listed), 2 an input to fix, 3 the environment (disk,
permissions, network, memory), 4 unexpected (a bug: please report), 130 interrupted.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import sys
import traceback

from . import InputError

EXIT_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_UNEXPECTED = 4
EXIT_INTERRUPTED = 130


def debug_enabled(flag=False):
    return bool(flag) or os.environ.get("TACEPREDICT_DEBUG", "") not in ("", "0")


def _filename(exc):
    names = [n for n in (getattr(exc, "filename", None), getattr(exc, "filename2", None)) if n]
    return str(names[0]) if names else None


_ERRNO_TEXT = {"No space left on device": errno.ENOSPC, "Read-only file system": errno.EROFS,
               "Permission denied": errno.EACCES, "Disk quota exceeded": errno.EDQUOT}


def os_errno(exc):
    """An OSError's errno; libraries that lose it (pyarrow: 'Error writing bytes ... No space left on device')
    still name it in the message."""
    if getattr(exc, "errno", None):
        return exc.errno
    text = str(exc)
    found = re.search(r"\[Errno (\d+)\]", text)
    if found:
        return int(found.group(1))
    return next((code for words, code in _ERRNO_TEXT.items() if words in text), None)


def _os_error(exc):
    """(InputError, exit code) for an OSError, by its errno."""
    path = _filename(exc)
    where = f" {path}" if path else ""
    code = os_errno(exc)
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        what = "the disk is full" if code == errno.ENOSPC else \
            "the disk quota is used up" if code == errno.EDQUOT else "the file is larger than the system allows"
        return InputError(f"{what} (writing{where or ' an output'})", column="--out",
                          fix="free space or choose an --out on another disk, then run the same command again: "
                              "finished cases are kept and the previous results are unchanged"), EXIT_ENVIRONMENT
    if code == errno.EROFS:
        return InputError(f"the file system is read-only{(': ' + path) if path else ''}", column="--out",
                          fix="choose an --out folder on a writable disk"), EXIT_ENVIRONMENT
    if code in (errno.EACCES, errno.EPERM):
        return InputError(f"permission denied{(': ' + path) if path else ''}", column="--out",
                          fix="choose a folder you may write (and files you may read), or ask for access"), \
            EXIT_ENVIRONMENT
    if code == errno.ENOENT:
        return InputError(f"file or folder not found{(': ' + path) if path else ''}",
                          fix="check the path (relative paths are relative to the current folder, manifest "
                              "paths to the manifest's folder)"), EXIT_INPUT
    if code == errno.EISDIR:
        return InputError(f"a folder was given where a file is needed{(': ' + path) if path else ''}",
                          fix="give the file's path"), EXIT_INPUT
    if code == errno.ENOTDIR:
        return InputError(f"a file was given where a folder is needed{(': ' + path) if path else ''}",
                          fix="give a folder's path"), EXIT_INPUT
    if code == errno.ENAMETOOLONG:
        return InputError(f"a file name is too long{(': ' + path) if path else ''}",
                          fix="use a shorter --out path"), EXIT_INPUT
    if code == errno.EMFILE or code == errno.ENFILE:
        return InputError("too many open files", fix="use fewer --workers, or raise the limit (ulimit -n)"), \
            EXIT_ENVIRONMENT
    return InputError(f"{exc.strerror or exc}{(': ' + path) if path else ''}",
                      fix="check the disk and the path, then run the same command again"), EXIT_ENVIRONMENT


def explain(exc):
    """``(InputError, exit code)`` for any exception; the InputError's ``__cause__`` is ``exc``."""
    from urllib.error import URLError

    if isinstance(exc, InputError):
        return exc, EXIT_INPUT
    if isinstance(exc, KeyboardInterrupt):
        return InputError("interrupted", fix="finished cases are kept; run the same command again to resume"), \
            EXIT_INTERRUPTED
    if isinstance(exc, URLError):  # before OSError: URLError is one
        reason = getattr(exc, "reason", exc)
        return InputError(f"no network connection ({reason})",
                          fix="this step downloads files: run it once online, copy the file by hand, or use "
                              "options that need no download (e.g. --weights random or a checkpoint file)"), \
            EXIT_ENVIRONMENT
    if isinstance(exc, MemoryError):
        return InputError("out of memory", fix="use fewer --workers, a smaller --icc-cases, or a machine with more "
                          "memory; check that the images are the size you expect"), EXIT_ENVIRONMENT
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, json.JSONDecodeError):
        return InputError(f"a JSON file is damaged (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                          fix="re-create or re-copy the file (model bundles: re-copy the whole folder)"), EXIT_INPUT
    try:
        from .stats.cox import ConvergenceError
    except ImportError:  # pragma: no cover - stats always imports
        ConvergenceError = ()
    if ConvergenceError and isinstance(exc, ConvergenceError):
        fix = "leave out the covariate named, or merge its rare categories" if "diverges" in str(exc) else \
            "keep one of the covariates named in --covariates (the others add no information)"
        return InputError(f"the Cox model cannot be fitted: {exc}", column="--covariates", fix=fix), EXIT_INPUT
    try:
        import pandas as pd
        if isinstance(exc, (pd.errors.ParserError, pd.errors.EmptyDataError)):
            return InputError(f"a table cannot be read as CSV ({str(exc).splitlines()[0]})",
                              fix="save it as comma-separated UTF-8 CSV"), EXIT_INPUT
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, UnicodeDecodeError):
        return InputError(f"a text file is not UTF-8 ({exc.reason} at byte {exc.start})",
                          fix="save it as UTF-8 (in Excel: CSV UTF-8)"), EXIT_INPUT
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" in {os.path.basename(last.filename)}:{last.lineno}" if last else ""
    return InputError(f"unexpected {type(exc).__name__}: {exc}{where}",
                      fix="this is probably a bug: run again with --debug for the traceback and report it with "
                          "the command line"), EXIT_UNEXPECTED


def message(error):
    """The one line (or block) a user reads for an explained error."""
    return f"ERROR: {error}"


def run(func, *args, debug=False, stream=None, **kwargs):
    """Call ``func`` behind the boundary: its return value, or the explained error's exit code after printing
    its message (and, under debug, the traceback)."""
    import warnings

    from . import InputWarning
    stream = stream or sys.stderr
    show = warnings.showwarning

    def show_input_warnings(text, category, filename, lineno, file=None, line=None):
        if issubclass(category, InputWarning):  # a documented rule was applied: one plain line
            print(f"WARNING: {text}", file=stream)
        else:
            show(text, category, filename, lineno, file, line)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_input_warnings
            return func(*args, **kwargs)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the boundary: every exception becomes a message
        error, code = explain(exc)
        if debug_enabled(debug):
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=stream)
        if code == EXIT_INTERRUPTED:
            print("\ninterrupted: finished cases are kept; run the same command again to resume", file=stream)
        else:
            print(message(error), file=stream)
        return code


def to_input_error(exc):
    """An exception as the InputError a user reads (chained to the original under debug only)."""
    error, _ = explain(exc)
    if error is exc:
        return error
    error.__cause__ = exc if debug_enabled() else None
    error.__suppress_context__ = not debug_enabled()
    return error


def user_errors(func):
    """Decorator: every exception ``func`` raises leaves as an InputError with a clear message (the Slicer
    Logic's boundary; its widget shows the message)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (InputError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary
            error = to_input_error(exc)
        raise error
    return wrapper


def one_line(exc):
    """A per-case or per-model failure as one line (failure tables, the Slicer results table)."""
    error, _ = explain(exc)
    return str(error)
