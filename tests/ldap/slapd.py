"""A real OpenLDAP server (Debian's ``slapd``) for the tests: a generated ``slapd.conf`` in a temp folder,
an MDB database there, a free loopback port; started with ``slapd -f`` in the foreground (no system
service), filled with ``ldapadd``, changed with ``ldapmodify``, stopped with the test."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

from tests.hub.launcher import stop_process

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "directory-root-pw"
SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
LDAP_TOOLS = ("ldapadd", "ldapmodify", "ldapwhoami")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_tools() -> list[str]:
    missing = [] if os.path.exists(SLAPD) else ["slapd"]
    return missing + [t for t in LDAP_TOOLS if not shutil.which(t)]


CONFIG = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 67108864
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_pw}
directory {dir}/data
# users bind with their own password; signed-in users read the tree (the authenticator looks up groups as
# the user)
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
"""


class Slapd:
    def __init__(self, base: str):
        self.dir = base
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(base, "slapd.log")

    def start(self, timeout: float = 30) -> None:
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        conf = os.path.join(self.dir, "slapd.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(dir=self.dir, suffix=SUFFIX, root_dn=ROOT_DN, root_pw=ROOT_PW))
        log = open(self.log_path, "w")
        # -d 0: stay in the foreground (the test owns the process); -h: only our loopback port
        self.proc = subprocess.Popen([SLAPD, "-f", conf, "-h", self.url + "/", "-d", "0"], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.proc.returncode}:\n{self.log()}")
            r = subprocess.run(["ldapwhoami", "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW],
                               capture_output=True, text=True)
            if r.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"slapd did not answer in {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-3000:]

    def _ldif(self, tool: str, ldif: str) -> None:
        r = subprocess.run([tool, "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW], input=ldif,
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"{tool} failed ({r.returncode}): {r.stderr}\n{ldif}")

    def add(self, ldif: str) -> None:
        self._ldif("ldapadd", ldif)

    def modify(self, ldif: str) -> None:
        self._ldif("ldapmodify", ldif)

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc, 15)
