"""The fixed cost of a send: `mailer send --latest --yes` for the sample article to one
reader of a fresh SQLite file, through an aiosmtpd server in this process, as a newsroom
runs it (a new process each time). Prints the median wall time of N runs and its parts:
the interpreter, the imports, the first render in a process, and the rest (database,
queue, SMTP session, outcome); `mailer --help`; where the imports go; and the target.

    .venv/bin/python bench/startup.py [--runs 7]

The parts are measured in processes of their own (medians too), so they add up to the
send's time only roughly. Beside each wall time, the CPU time of the process (user + system),
which a busy machine inflates less. Python writes its bytecode caches to a folder of the
run's own (PYTHONPYCACHEPREFIX) and one run warms them, as an installed mailer has its
caches from the install.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from mailer.articles import ingest_file
from mailer.db import open_database
from mailer.demo import SAMPLE_ARTICLE
from mailer.testing import TEST_SECRET_KEY, import_readers, make_settings, smtp_server

TARGET = 0.5  # seconds, issue 18
PYTHON = sys.executable

# The first render in a fresh process, after the imports the CLI makes anyway: the
# templates compiled, the CSS inlined (premailer and cssutils loaded), the text part.
RENDER = """
import sys, time
import mailer.cli
from mailer.db import open_database
from mailer.render import render_article_issue
from mailer.models import Article
from mailer.settings import load_settings
from sqlmodel import Session, select
settings = load_settings()
with Session(open_database(settings.database.url)) as session:
    article = session.exec(select(Article)).one()
start = time.perf_counter()
render_article_issue(settings, article)
print(time.perf_counter() - start)
"""


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def template(folder: Path) -> Path:
    """A migrated SQLite file with the sample article and one active reader."""
    settings = make_settings(folder)
    engine = open_database(settings.database.url)
    ingest_file(engine, settings, SAMPLE_ARTICLE)
    import_readers(engine, folder, 1)
    engine.dispose()  # the last connection out folds the WAL into the file
    return folder / "subscribers.db"


def environment(database: Path, port: int) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    clean.pop("PYTHONDONTWRITEBYTECODE", None)
    return {
        **clean,
        "PYTHONPYCACHEPREFIX": str(database.parent / "pycache"),
        "MAILER_SECRET_KEY": TEST_SECRET_KEY,
        "MAILER_DATABASE_URL": f"sqlite:///{database}",
        "MAILER_SMTP_HOST": "127.0.0.1",
        "MAILER_SMTP_PORT": str(port),
        "MAILER_SMTP_SECURITY": "none",
    }


CPU_TIMES: dict[str, list[float]] = defaultdict(list)  # by command, the child's CPU seconds


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    CPU_TIMES[" ".join(command[1:])].append(cpu)
    return seconds, done.stdout + done.stderr


def cpu_of(command: list[str]) -> float:
    return statistics.median(CPU_TIMES[" ".join(command[1:])])


def fresh(source: Path, folder: Path, run: int) -> Path:
    target = folder / f"run-{run}.db"
    shutil.copyfile(source, target)
    return target


SEND = [PYTHON, "-m", "mailer", "send", "--latest", "--yes"]
HELP = [PYTHON, "-m", "mailer", "--help"]
BARE = [PYTHON, "-c", "pass"]
CLI = [PYTHON, "-c", "import mailer.cli"]


def send_times(db: Path, folder: Path, port: int, runs: int, received: list[object]) -> list[float]:
    seconds = []
    for run in range(runs + 1):  # the first warms the bytecode caches
        before = len(received)
        env = environment(fresh(db, folder, run), port)
        took, output = timed(SEND, folder, env)
        if len(received) != before + 1:
            raise SystemExit(f"the send did not deliver one message:\n{output}")
        if run:
            seconds.append(took)
    CPU_TIMES[" ".join(SEND[1:])].pop(0)
    return seconds


def median_of(runs: int, command: list[str], cwd: Path, env: dict[str, str]) -> float:
    return statistics.median(timed(command, cwd, env)[0] for _ in range(runs))


def import_profile(db: Path, folder: Path, port: int) -> tuple[float, dict[str, float]]:
    """Import time of everything one send loads (python -X importtime, which adds its
    own overhead), in all and by package (self time, ms)."""
    env = environment(fresh(db, folder, 999), port)
    command = [PYTHON, "-X", "importtime", "-m", "mailer", "send", "--latest", "--yes"]
    _, output = timed(command, folder, env)
    total, by_package = 0.0, defaultdict(float)
    for line in output.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)", line)
        if not found:
            continue
        own, cumulative, indent, name = found.groups()
        if len(indent) == 1:  # a top-level import: its cumulative time holds the rest
            total += int(cumulative) / 1e6
        parts = name.split(".")
        package = ".".join(parts[:2]) if parts[0] == "mailer" else parts[0]
        by_package[package] += int(own) / 1e3
    return total, dict(by_package)


def render_time(db: Path, folder: Path, port: int, runs: int) -> float:
    env = environment(fresh(db, folder, 998), port)
    return statistics.median(
        float(timed([PYTHON, "-c", RENDER], folder, env)[1].split()[-1]) for _ in range(runs)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per figure (median)")
    args = parser.parse_args()
    note(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs at the start")
    with tempfile.TemporaryDirectory(prefix="mailer-startup-") as name, smtp_server() as server:
        folder = Path(name)
        controller, handler = server
        db = template(folder)
        env = environment(db, controller.port)
        runs = args.runs
        sends = send_times(db, folder, controller.port, runs, handler.received)
        bare = median_of(runs, BARE, folder, env)
        cli = median_of(runs, CLI, folder, env)
        helped = median_of(runs, HELP, folder, env)
        render = render_time(db, folder, controller.port, runs)
        imports, by_package = import_profile(db, folder, controller.port)
    send = statistics.median(sends)
    verdict = "PASS" if send <= TARGET else "FAIL"
    rows = [
        ("python -c pass", bare, cpu_of(BARE)),
        ("python -c 'import mailer.cli'", cli, cpu_of(CLI)),
        ("mailer --help", helped, cpu_of(HELP)),
        ("mailer send --latest --yes, one reader", send, cpu_of(SEND)),
        ("  interpreter (python -c pass)", bare, None),
        ("  imports of the send (-X importtime)", imports, None),
        ("  first render in a process", render, None),
        ("  the rest: database, queue, SMTP, outcome", send - bare - imports - render, None),
    ]
    print(f"Start-up, median of {runs} runs (send runs: {', '.join(f'{s:.3f}' for s in sends)})")
    print(f"  {'':<46} {'wall':>7}    {'CPU':>7}")
    for label, seconds, cpu in rows:
        used = f"{cpu * 1000:7.0f} ms" if cpu is not None else ""
        print(f"  {label:<46} {seconds * 1000:7.0f} ms {used}")
    print("Import self time by package (ms, the send's process, -X importtime):")
    for package, ms in sorted(by_package.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {package:<30} {ms:7.1f}")
    print(f"Target: a one-reader send <= {TARGET * 1000:.0f} ms: {verdict} ({send * 1000:.0f} ms)")
    note(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
