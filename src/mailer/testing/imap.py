"""A private Dovecot on 127.0.0.1 for tests: its own configuration, directories and
self-signed certificate in a temporary folder, IMAPS on one free port and IMAP with
STARTTLS on another, one user from a passwd-file, Maildir storage. Never the system's
Dovecot: `dovecot -c OUR_CONFIG -F` runs as a child process and is stopped afterwards.

Run as root (CI), Dovecot's login and internal processes run as the users Debian's
package creates (dovenull, dovecot) and the mailbox belongs to `dovecot`; run as anyone
else, every process runs as that user (Dovecot allows it without chroots)."""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailer.bounces.imap import quoted_folder
from mailer.catcher import free_port
from mailer.testing.certs import self_signed

DOVECOT = "dovecot"


def dovecot_available() -> bool:
    """Is Debian's dovecot-imapd installed (`.ci/run` installs it), with the users its
    package makes when this runs as root?"""
    if shutil.which(DOVECOT) is None and not Path("/usr/sbin/dovecot").exists():
        return False
    try:
        return os.geteuid() != 0 or bool(pwd.getpwnam("dovecot") and pwd.getpwnam("dovenull"))
    except KeyError:
        return False


@dataclass(frozen=True)
class Mailbox:
    """A running private Dovecot and its one user."""

    host: str
    port: int  # IMAPS
    starttls_port: int  # IMAP, STARTTLS required before login
    user: str
    password: str
    ca_file: Path  # the self-signed certificate: trust it (SSL_CERT_FILE) to connect
    log: Path

    def bounces_section(self, **more: Any) -> dict[str, Any]:
        """The [bounces] keys that read this mailbox over IMAPS."""
        return {
            "imap_host": self.host,
            "imap_port": self.port,
            "imap_security": "tls",
            "imap_user": self.user,
            "imap_password": self.password,
            **more,
        }

    @contextmanager
    def client(self) -> Iterator[imaplib.IMAP4_SSL]:
        """A logged-in connection, for a test to put messages in and look at folders."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        connection = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=context, timeout=10)
        try:
            connection.login(self.user, self.password)
            yield connection
        finally:
            with suppress(imaplib.IMAP4.error, OSError):
                connection.logout()

    def append(self, message: bytes, folder: str = "INBOX") -> None:
        """Deliver `message` into `folder` (created if missing)."""
        with self.client() as connection:
            if folder != "INBOX":
                connection.create(quoted_folder(folder))  # "already exists" is a NO: ignored
            status, reply = connection.append(quoted_folder(folder), "", None, message)
            if status != "OK":
                raise RuntimeError(f"APPEND to {folder} refused: {reply!r}")

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """The messages in `folder` (none if it does not exist), oldest first."""
        with self.client() as connection:
            status, _ = connection.select(quoted_folder(folder), readonly=True)
            if status != "OK":
                return []
            _, found = connection.uid("SEARCH", "ALL")
            found_uids = found[0].split() if found and found[0] else []
            bodies = []
            for uid in found_uids:
                _, data = connection.uid("FETCH", uid, "(BODY.PEEK[])")
                bodies += [part[1] for part in data if isinstance(part, tuple)]
            return bodies

    def empty(self, *folders: str) -> None:
        """Delete every message of `folders` (INBOX when none named)."""
        with self.client() as connection:
            for folder in folders or ("INBOX",):
                status, count = connection.select(quoted_folder(folder))
                if status != "OK" or count[0] in (b"0", None):
                    continue
                connection.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                connection.close()  # expunges what is flagged deleted


@contextmanager
def imap_server(user: str = "bounces", password: str = "imap-test-password") -> Iterator[Mailbox]:
    """A private Dovecot serving one user's Maildir on 127.0.0.1; stopped afterwards."""
    binary = shutil.which(DOVECOT) or "/usr/sbin/dovecot"
    with tempfile.TemporaryDirectory(prefix="mailer-dovecot-") as name:
        root = Path(name)
        # Dovecot's own users must reach the files (a pytest tmp_path is the caller's only)
        root.chmod(0o755)
        users = _process_users()
        home = root / "home"
        home.mkdir()
        if os.geteuid() == 0:
            os.chown(home, users.mail_uid, users.mail_gid)
        cert, key = self_signed(root, "imap", ("127.0.0.1", "localhost"))
        (root / "passwd").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
        port, starttls_port = free_port(), free_port()
        log = root / "dovecot.log"
        config = root / "dovecot.conf"
        config.write_text(
            _config(root, home, cert, key, log, port, starttls_port, users), encoding="utf-8"
        )
        with open(root / "stderr.log", "wb") as errors:
            process = subprocess.Popen(
                [binary, "-c", str(config), "-F"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        try:
            _wait_for(process, port, starttls_port, root)
            yield Mailbox("127.0.0.1", port, starttls_port, user, password, cert, log)
        finally:
            _stop(process)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class _Users:
    login: str
    internal: str
    mail_uid: int
    mail_gid: int
    group: str  # the internal processes' group
    chroot: bool


def _process_users() -> _Users:
    if os.geteuid() == 0:
        mail = pwd.getpwnam("dovecot")
        return _Users("dovenull", "dovecot", mail.pw_uid, mail.pw_gid, "dovecot", True)
    me = pwd.getpwuid(os.geteuid())
    group = grp.getgrgid(me.pw_gid).gr_name
    return _Users(me.pw_name, me.pw_name, me.pw_uid, me.pw_gid, group, False)


def _config(
    root: Path,
    home: Path,
    cert: Path,
    key: Path,
    log: Path,
    port: int,
    starttls_port: int,
    users: _Users,
) -> str:
    no_chroot = "" if users.chroot else "  chroot =\n"
    return f"""\
# a private instance for mailer's tests: nothing of /etc/dovecot is read
instance_name = mailer-test-{port}
base_dir = {root}/run
state_dir = {root}/state
log_path = {log}
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes
# no statistics process: a login process would wait 5 s for it at shutdown
stats_writer_socket_path =
default_login_user = {users.login}
default_internal_user = {users.internal}
default_internal_group = {users.group}
first_valid_uid = {users.mail_uid}
last_valid_uid = {users.mail_uid}
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
# a refused login answered at once
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={users.mail_uid} gid={users.mail_gid} home={home}/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
{no_chroot}}}
service anvil {{
{no_chroot}  # nor is the next login held back seconds after a refused one: the auth
  # process cannot reach anvil's penalty socket, so it keeps no penalty
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the master, which stops its processes and then sleeps a second before
    it exits: once only its log process is left (it ends when the master's pipes close),
    there is nothing left to wait for, and the master is killed."""
    process.terminate()
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 5
    while process.poll() is None and time.monotonic() < deadline:
        try:
            names = [
                Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children.read_text().split()
            ]
        except OSError:
            return  # no /proc (or a child gone meanwhile): the master stops in its own time
        if all(name.endswith(b"/log\0") for name in names):
            process.kill()
            return
        time.sleep(0.005)


def _wait_for(process: subprocess.Popen[bytes], port: int, starttls_port: int, root: Path) -> None:
    """Until IMAPS takes connections and the plain port greets ("* OK"): the login and
    auth processes are up. The logs in the error if Dovecot stops instead."""
    deadline = time.monotonic() + 20
    while not (_accepts(port) and _greets(starttls_port)):
        if process.poll() is not None or time.monotonic() > deadline:
            process.terminate()
            logs = "\n".join(
                path.read_text(errors="replace")
                for path in (root / "stderr.log", root / "dovecot.log")
                if path.exists()
            )
            raise RuntimeError(f"the test Dovecot did not start:\n{logs}")
        time.sleep(0.005)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            return connection.recv(100).startswith(b"* OK")
    except OSError:
        return False
