"""Where results go, and how they get there: one place for every path built from a case ID, every output
written as one unit, and every output folder held by one run at a time.

- ``file_names(case_ids)`` turns case IDs into file-name stems that are safe (no separators, no ``..``, no
  device names, at most 80 characters) and unique even on case-insensitive file systems (``a/b`` and ``a_b``,
  ``Case1`` and ``case1`` get different names: a short hash of the ID is appended whenever sanitising changed it
  or two IDs would share a name). ``inside(folder, *parts)`` joins and refuses any result outside ``folder``.
- ``write_file(path, write)`` writes through a temporary file in the same folder and renames it into place.
- ``Outputs(folder)`` stages a run's result files in a hidden folder and moves them into place only once all
  of them are written, with a run manifest (``run.json``: the run, each file's size and SHA-256) written
  last; ``check_run(folder)`` finds a set of files that do not belong to one run. A disk that fills up
  while the files are written leaves the previous run's files as they were; a run killed during the final
  renames (which need no space) is completed by the next run (``recover``).
- ``replace_folder(staging, target)`` puts a folder written elsewhere in place of ``target`` (a bundle, a
  report).
- ``refuse_overwrite`` / ``refuse_own_input``: a previous result is replaced only with ``--overwrite``, an
  input never.
- ``OutputLock(path)``: a lock file naming its holder (pid, host, start, command); a second run stops with who
  holds it; a lock left by a dead process on this host is taken over.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import uuid

from . import InputError

RUN_FILE = "run.json"
STAGING_PREFIX = ".staging-"
COMMITTED = ".committed"
MAX_STEM = 80
# Names Windows reserves whatever the extension (a case called "CON" would be unwritable there).
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


# ----------------------------------------------------------------------------------------- names and paths

def sanitise(text):
    """A file-name stem of ``text``: letters, digits, ``-_.`` kept, anything else ``_``; no leading dot, no
    reserved device name, not empty."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", str(text))
    stem = re.sub(r"^\.+", lambda m: "_" * len(m.group()), stem)  # "..", ".hidden"
    if not stem:
        stem = "_"
    if stem.split(".")[0].lower() in _RESERVED:
        stem = "_" + stem
    return stem


def _digest(text):
    return hashlib.sha256(str(text).encode("utf-8")).hexdigest()[:10]


def file_names(case_ids):
    """{case ID: file-name stem}: safe and unique, also case-insensitively. A stem equals its ID when the ID is
    already a safe name that no other ID shares; otherwise the ID's hash is appended (stable: it depends on the
    ID, and on the other IDs only when they collide)."""
    ids = [str(c) for c in case_ids]
    if len(set(ids)) != len(ids):
        duplicate = next(c for c in ids if ids.count(c) > 1)
        raise InputError("duplicate case ID", duplicate, "case_id", "make every case_id unique")
    stems = {c: sanitise(c) for c in ids}
    clash = {}
    for case_id, stem in stems.items():
        clash.setdefault(stem.lower(), []).append(case_id)
    names = {}
    for case_id, stem in stems.items():
        changed = stem != case_id or len(clash[stem.lower()]) > 1 or len(stem) > MAX_STEM
        names[case_id] = f"{stem[:MAX_STEM]}-{_digest(case_id)}" if changed else stem
    lowered = [n.lower() for n in names.values()]
    assert len(set(lowered)) == len(lowered), "file names are not unique"  # 40-bit hashes: never in practice
    return names


def inside(folder, *parts):
    """``folder/parts...``, refused (InputError) when it would lie outside ``folder`` (absolute parts, ``..``,
    links pointing out)."""
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, *[str(p) for p in parts]))
    if os.path.commonpath([root, path]) != root or path == root and parts:
        raise InputError(f"the output path {os.path.join(folder, *map(str, parts))} would lie outside {folder}",
                         column="case_id", fix="use case IDs without path separators or '..'")
    return path


def case_path(folder, case_id, suffix="", names=None):
    """The path of a case's output ``<stem><suffix>`` in ``folder`` (``names``: a ``file_names`` mapping of the
    whole cohort, so that colliding IDs get distinct names)."""
    stem = (names or file_names([case_id]))[str(case_id)]
    return inside(folder, stem + suffix)


# ------------------------------------------------------------------------------------------------ writing

def _fsync_dir(folder):
    if os.name != "posix":
        return
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_file(path, write):
    """Call ``write(temporary path)`` and rename the result to ``path``: readers never see half a file, and a
    failed write (disk full) leaves the previous file as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def sha256_file(path):
    """SHA-256 hex digest of a file's contents (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Outputs:
    """A run's result files in ``folder``, written as one unit: ``path(name)`` is where to write each file (in
    a hidden staging folder), ``commit()`` moves them all into place and writes ``run.json`` last. Leaving the
    ``with`` block by an exception discards the staged files; the folder keeps the previous run's files."""

    def __init__(self, folder, command="", known=()):
        self.folder = folder
        self.command = command
        self.known = tuple(known)  # files earlier runs may have left: those this run does not write are removed
        self.run_id = f"{_now()} pid {os.getpid()} {uuid.uuid4().hex[:8]}"
        self.staging = os.path.join(folder, f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self.names = []

    def __enter__(self):
        os.makedirs(self.folder, exist_ok=True)
        recover(self.folder)
        os.makedirs(self.staging)
        return self

    def path(self, name):
        if name not in self.names:
            self.names.append(name)
        return inside(self.staging, name)

    def write(self, name, write):
        """Write one file through ``write(path)``."""
        write(self.path(name))

    def commit(self):
        files = {}
        for name in self.names:
            path = os.path.join(self.staging, name)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{name} was announced but not written")
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
            files[name] = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
        previous = set(self.known)
        try:
            with open(os.path.join(self.folder, RUN_FILE), encoding="utf-8") as handle:
                previous |= set(json.load(handle).get("files", {}))
        except (OSError, ValueError, AttributeError):
            pass
        stale = sorted(n for n in previous - set(files) if os.path.basename(n) == n and n != RUN_FILE)
        record = {"run": self.run_id, "command": self.command, "finished": _now(), "files": files, "removes": stale}
        with open(os.path.join(self.staging, RUN_FILE), "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        # The marker makes the staged set complete: from here on a crash is finished forward by recover().
        with open(os.path.join(self.staging, COMMITTED), "w") as handle:
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(self.staging)
        _move_into_place(self.staging, self.folder)
        return record

    def __exit__(self, kind, value, tb):
        try:
            if kind is None:
                self.commit()
        except OSError as exc:
            value = exc
            raise
        finally:
            if os.path.isdir(self.staging):
                shutil.rmtree(self.staging, ignore_errors=True)
            if isinstance(value, OSError) and not getattr(value, "filename", None):
                try:  # some writers (pyarrow) lose the path: name at least the folder being written
                    value.filename = self.folder
                except (AttributeError, TypeError):
                    pass
        return False


def _move_into_place(staging, folder):
    names = [n for n in os.listdir(staging) if n not in (RUN_FILE, COMMITTED)]
    for name in names:  # renames within one file system need no free space
        os.replace(os.path.join(staging, name), os.path.join(folder, name))
    try:
        with open(os.path.join(staging, RUN_FILE), encoding="utf-8") as handle:
            stale = json.load(handle).get("removes", [])
    except (OSError, ValueError, AttributeError):
        stale = []
    for name in stale:  # a previous run's file this run does not write (e.g. icc.csv) no longer belongs
        try:
            os.remove(os.path.join(folder, name))
        except (FileNotFoundError, IsADirectoryError):
            pass
    os.replace(os.path.join(staging, RUN_FILE), os.path.join(folder, RUN_FILE))
    _fsync_dir(folder)
    shutil.rmtree(staging, ignore_errors=True)


def recover(folder):
    """Finish the renames of a committed staging folder a killed run left in ``folder``, and delete staged
    files of runs that never committed (a run that is still alive holds the folder's lock, so it is not ours
    to touch). Returns the names of the staging folders completed."""
    finished = []
    if not os.path.isdir(folder):
        return finished
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not name.startswith(STAGING_PREFIX) or not os.path.isdir(path):
            continue
        match = re.match(re.escape(STAGING_PREFIX) + r"(\d+)-", name)
        if match and int(match.group(1)) != os.getpid() and _alive(int(match.group(1))) \
                and not os.path.isfile(os.path.join(path, COMMITTED)):
            continue  # another live process is still writing it
        if os.path.isfile(os.path.join(path, COMMITTED)):
            _move_into_place(path, folder)
            finished.append(name)
        else:
            shutil.rmtree(path, ignore_errors=True)
    return finished


def check_run(folder, names=None):
    """None when the files ``run.json`` lists (or ``names`` of them) are the ones that run wrote (size and
    SHA-256), else a sentence saying which file is not. A folder without ``run.json`` (written before it
    existed) is not checked."""
    path = os.path.join(folder, RUN_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        files = record["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{path} is unreadable ({type(exc).__name__})"
    for name, expected in files.items():
        if names is not None and name not in names:
            continue
        file = os.path.join(folder, name)
        if not os.path.isfile(file):
            return f"{name} of the run of {record.get('run', '?')} is missing"
        if os.path.getsize(file) != expected.get("bytes") or sha256_file(file) != expected.get("sha256"):
            return f"{name} is not the file the run of {record.get('run', '?')} wrote (changed or from another run)"
    return None


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_own_input(out, inputs, option="--out", replaces_folder=False):
    """InputError when the output ``out`` is one of the command's ``inputs`` (the same file, also through
    links), or, for an output folder that replaces whatever is there (``replaces_folder``), holds one."""
    out_real = os.path.realpath(out)
    for item in inputs:
        if not item:
            continue
        real = os.path.realpath(item)
        if out_real == real or os.path.exists(out) and os.path.exists(item) and _same_file(out, item):
            raise InputError(f"{option} {out} is one of this command's inputs ({item})", column=option,
                             fix=f"write the result somewhere else (another {option})")
        if replaces_folder and os.path.commonpath([out_real, real]) == out_real:
            raise InputError(f"{option} {out} holds this command's input {item}, which replacing the folder would "
                             "delete", column=option, fix=f"write the result somewhere else (another {option})")


def refuse_overwrite(out, overwrite, what="result"):
    """InputError when ``out`` exists (a previous result) and ``overwrite`` is not set."""
    if overwrite or not os.path.exists(out):
        return
    if os.path.isdir(out) and not os.listdir(out):
        return
    raise InputError(f"{out} already holds a {what}", column="--out",
                     fix="add --overwrite to replace it, or choose another --out")


def replace_folder(staging, target):
    """Put the folder ``staging`` (written completely) in place of ``target``: the old one is moved aside first
    and deleted only once the new one is in place."""
    old = None
    if os.path.exists(target):
        old = f"{target}.old-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        if os.path.isdir(old):
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.remove(old)


def staging_folder(target):
    """A fresh hidden folder next to ``target`` (same file system, so that ``replace_folder`` is a rename)."""
    parent = os.path.dirname(os.path.abspath(target)) or "."
    os.makedirs(parent, exist_ok=True)
    path = os.path.join(parent, f".{os.path.basename(os.path.abspath(target))}{STAGING_PREFIX}"
                                f"{os.getpid()}-{uuid.uuid4().hex[:6]}")
    os.makedirs(path)
    return path


# -------------------------------------------------------------------------------------------------- locks

def _alive(pid):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    if sys.platform.startswith("linux"):  # a zombie has finished
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
                return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return True
    return True


def lock_path(out):
    """The lock file of an output (a file or a folder): a hidden file next to it."""
    out = os.path.abspath(out)
    return os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.lock")


class OutputLock:
    """Held while a command writes ``out``. A second command on the same output stops with an InputError naming
    the holder; a lock whose process no longer runs on this host is taken over (and said so)."""

    def __init__(self, out, command=""):
        self.out = out
        self.path = lock_path(out)
        self.command = command
        self.taken_over = None
        self.held = False

    def _holder(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def acquire(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(), "command": self.command}
        for _ in range(3):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:  # being written this instant, or garbage
                    holder = {"pid": -1, "host": socket.gethostname(), "started": "?", "command": "?"}
                same_host = holder.get("host") == socket.gethostname()
                if same_host and not _alive(int(holder.get("pid", -1))):
                    self.taken_over = holder
                    try:
                        os.remove(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                raise InputError(
                    f"{self.out} is being written by another run: pid {holder.get('pid')} on "
                    f"{holder.get('host')}, started {holder.get('started')} ({holder.get('command') or '?'})",
                    column="--out", fix="wait for it to finish, or choose another --out; if that run is gone "
                    f"(another host that crashed), delete {self.path}")
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(me, stream)
            self.held = True
            return self
        raise InputError(f"cannot take the lock {self.path}", column="--out", fix=f"delete {self.path}")

    def release(self):
        if self.held:
            self.held = False
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
