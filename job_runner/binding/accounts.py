"""Which system account runs a user's workloads (servers and local jobs), and where their home is.

One implementation for the local spawner (``spawner.local.LocalGPUSpawner``) and the local job executor
(``job_runner.executors.local.LocalExecutor``): both create an ``Isolation`` (the ``Isolation:`` section of
the deployment file configures both processes alike) and ask it for the user's ``Account``.

Modes (``Isolation.mode``):

- ``"accounts"`` (default when the process runs as root): every hub user gets their own unprivileged
  system account, ``account_prefix`` + the user's name (``aistack-alice``), created on first need with
  ``useradd`` (like JupyterHub's ``LocalProcessSpawner`` with ``create_system_users``). The prefix keeps a hub
  user named ``root`` or ``daemon`` from ever mapping onto an existing system account, and an existing
  account is used only if its GECOS field carries our marker (``AIStack user <name>``): an account we did not
  create is refused, and so is uid or gid 0. Workloads then run in a bubblewrap sandbox
  (``job_runner.binding.sandbox``) as that account.
- ``"single-user"`` (default when not root: the process cannot switch users): everything runs as the
  process's own account, which can read every user's files and the platform's secrets. For one trusted
  user only; ``aistack-hub up`` says so at start. ``"accounts"`` without root is a start-up error.

Homes are ``home_root/<safe name>``: never inside the data folder (``check_home_root``), owned by the
account, mode 0700. The path is computed, not read from the passwd entry, so that the hub and the service
(and tests with their own ``home_root``) agree without asking each other.

This module imports nothing of ours (layer 1).
"""
from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass

from traitlets import Bool, CaselessStrEnum, List, Unicode, default
from traitlets.config import Configurable

MARKER = "AIStack user "  # GECOS of the accounts we created: "AIStack user <safe name of the hub user>"
_SAFE = re.compile(r"^[a-z_][a-z0-9_-]*$")
_MAX_NAME = 32  # useradd's limit
_lock = threading.Lock()


class IsolationError(RuntimeError):
    """The configured isolation cannot be provided (the message says why and what to do)."""


@dataclass(frozen=True)
class Account:
    """A user's workload account: ``name``/``uid``/``gid`` of the system account, ``home`` its home.
    ``switch`` is False in single-user mode (the process's own account: no setuid, no sandbox)."""

    user: str  # the hub user's name
    name: str
    uid: int
    gid: int
    home: str
    switch: bool


def safe_name(username: str, room: int = _MAX_NAME) -> str:
    """A file- and account-safe name for a hub user: the name itself when it is a plain lower-case
    account name that fits, else a cleaned, shortened name plus 8 hex digits of its SHA-256 (distinct
    hub names never share one: ``a.b`` and ``a-b`` differ in the suffix)."""
    if _SAFE.match(username) and len(username) <= room:
        return username
    digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    clean = re.sub(r"[^a-z0-9_-]+", "-", username.lower()).strip("-") or "u"
    if not re.match(r"[a-z_]", clean):
        clean = "u" + clean
    return f"{clean[:max(1, room - 9)]}-{digest}"


def _is_under(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Isolation(Configurable):
    """How users' servers and local jobs are kept apart on one machine (see the module docstring)."""

    mode = CaselessStrEnum(
        ["accounts", "single-user"],
        help="""'accounts': each user's servers and jobs run as the user's own system account
        (account_prefix + name) in a bubblewrap sandbox; needs root. 'single-user': everything runs as this
        process's account (no isolation between users; for one trusted user). Default: 'accounts' when
        running as root, else 'single-user'.""",
    ).tag(config=True)

    @default("mode")
    def _mode_default(self):
        return "accounts" if os.geteuid() == 0 else "single-user"

    account_prefix = Unicode(
        "aistack-",
        help="""Prefix of the users' system accounts (hub user 'alice' -> 'aistack-alice'), so that no hub
        user name maps onto an existing system account such as root or daemon. Must be non-empty.""",
    ).tag(config=True)

    home_root = Unicode(
        help="""Folder of the users' homes (home_root/<user>): each 0700 and owned by the user's account.
        Must not be inside the data folder. Default: /home/aistack when running as root, else
        ~/aistack-homes.""",
    ).tag(config=True)

    @default("home_root")
    def _home_root_default(self):
        if os.geteuid() == 0:
            return "/home/aistack"
        return os.path.join(os.path.expanduser("~"), "aistack-homes")

    create_accounts = Bool(
        True, help="Create a user's account (useradd) on first need; False: it must exist already (with "
                   "our GECOS marker 'AIStack user <user>')."
    ).tag(config=True)

    shell = Unicode("/bin/bash", help="Login shell recorded for created accounts (terminals in JupyterLab use "
                                      "$SHELL, which the spawner sets from this).").tag(config=True)

    extra_ro_paths = List(
        Unicode(),
        help="""More folders the sandboxes show read-only at the same path (shared datasets, a CUDA
        toolkit outside /usr, ...). The system folders, the Python environment and our packages are always
        shown.""",
    ).tag(config=True)

    # ------------------------------------------------------------------ checks
    @property
    def switches(self) -> bool:
        return self.mode == "accounts"

    def problem(self) -> str | None:
        """Why this mode cannot work here (None: it can)."""
        if self.mode == "accounts":
            if os.geteuid() != 0:
                return (f"Isolation.mode is 'accounts', but this process runs as uid {os.geteuid()}: only root "
                        "can run each user's servers and jobs as the user's own account. Run it as root, or set "
                        "Isolation.mode: single-user (then every workload runs as this account: one trusted "
                        "user only)")
            if not self.account_prefix:
                return "Isolation.account_prefix must not be empty (hub users named root or daemon would " \
                       "map onto those system accounts)"
            from .sandbox import unavailable

            why = unavailable()
            if why:
                return why
        return None

    def check(self) -> None:
        why = self.problem()
        if why:
            raise IsolationError(why)

    def check_home_root(self, *protected: str) -> None:
        """Homes must live outside the platform's folders (the data folder, the jobs' files)."""
        for p in protected:
            if p and (_is_under(self.home_root, p) or _is_under(p, self.home_root)):
                raise IsolationError(f"Isolation.home_root {self.home_root} overlaps {p}: users' homes must "
                                     "live outside the data folder")

    def describe(self) -> str:
        """One line for the start-up banner and log."""
        if self.mode == "accounts":
            return (f"accounts: each user's servers and jobs run as their own account ({self.account_prefix}"
                    f"<user>) in a bubblewrap sandbox; homes under {self.home_root}")
        me = pwd.getpwuid(os.geteuid()).pw_name
        return (f"single-user mode: every server and job runs as {me!r} and can read the others' files and "
                f"this deployment's secrets (one trusted user only; run as root for per-user accounts); "
                f"homes under {self.home_root}")

    # ------------------------------------------------------------------ accounts and homes
    def home(self, username: str) -> str:
        return os.path.join(os.path.abspath(self.home_root), safe_name(username))

    def account_name(self, username: str) -> str:
        return self.account_prefix + safe_name(username, _MAX_NAME - len(self.account_prefix))

    def account(self, username: str, create: bool | None = None) -> Account:
        """The account that runs ``username``'s workloads (created if missing and allowed)."""
        home = self.home(username)
        if not self.switches:
            me = pwd.getpwuid(os.geteuid())
            return Account(username, me.pw_name, me.pw_uid, me.pw_gid, home, switch=False)
        self.check()
        name = self.account_name(username)
        create = self.create_accounts if create is None else create
        with _lock:
            entry = _lookup(name)
            if entry is None:
                if not create:
                    raise IsolationError(f"no system account {name!r} for {username!r} (Isolation.create_accounts "
                                         f"is off: create it with useradd --comment '{MARKER}{safe_name(username)}')")
                entry = self._create(name, username, home)
        if entry.pw_gecos.split(",")[0] != MARKER + safe_name(username):
            raise IsolationError(f"the system account {name!r} exists but was not created by AIStack for "
                                 f"{username!r} (GECOS {entry.pw_gecos!r}): refusing to run workloads as it")
        if entry.pw_uid == 0 or entry.pw_gid == 0:
            raise IsolationError(f"the system account {name!r} has uid/gid 0: refusing to run workloads as it")
        return Account(username, name, entry.pw_uid, entry.pw_gid, home, switch=True)

    def _create(self, name: str, username: str, home: str) -> pwd.struct_passwd:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        cmd = [useradd, "--no-create-home", "--home-dir", home, "--shell", self.shell or "/bin/bash",
               "--user-group", "--comment", MARKER + safe_name(username), name]
        run = subprocess.run(cmd, capture_output=True, text=True)
        entry = _lookup(name)
        if entry is None:  # created by nobody: a real failure (another process creating it is fine)
            raise IsolationError(f"could not create the system account {name!r}: {run.stderr.strip() or run.returncode}")
        return entry

    def prepare_home(self, account: Account) -> str:
        """Create the home (0700, owned by the account); the folder of homes is root's, 0755."""
        root = os.path.dirname(account.home)
        os.makedirs(root, mode=0o755, exist_ok=True)
        try:
            os.mkdir(account.home, 0o700)
            created = True
        except FileExistsError:
            created = False
        st = os.lstat(account.home)
        if not os.path.isdir(account.home) or os.path.islink(account.home):
            raise IsolationError(f"{account.home} is not a folder")
        if account.switch and (created or st.st_uid != account.uid):
            os.chown(account.home, account.uid, account.gid)
            os.chmod(account.home, 0o700)
        return account.home


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None
