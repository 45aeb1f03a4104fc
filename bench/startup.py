"""The fixed cost of a send: `mailer send --latest --yes` for the sample article to one
reader of a fresh SQLite file, through an aiosmtpd server in this process, as a newsroom
runs it (a new process each time). Prints the median wall time of N runs and its parts;
`mailer --help`; the floor (SQLAlchemy's ORM and SQLModel alone); where the imports go;
and the target.

    .venv/bin/python bench/startup.py [--runs 7]

The parts come from a process of their own that runs the same send in steps: first it
imports every module the send loads (listed by a send before, in the order it loaded
them), then it runs the command, timing the first render inside it. So the imports and
the command's own work (settings, database, render, queue, SMTP, outcome) are measured
apart, the render's lazy imports (premailer) among the imports, not twice. Beside each
wall time, the CPU time of the process (user + system), which a busy machine inflates
less. Python writes its bytecode caches to a folder of the run's own
(PYTHONPYCACHEPREFIX) and one run warms them, as an installed mailer has its caches from
the install.
"""

from __future__ import annotations

import argparse
import json
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
from dataclasses import dataclass
from pathlib import Path

from mailer.articles import ingest_file
from mailer.db import open_database
from mailer.demo import SAMPLE_ARTICLE
from mailer.testing import TEST_SECRET_KEY, import_readers, make_settings, smtp_server

TARGET = 0.5  # seconds, issue 18
PYTHON = sys.executable

# The send, printing the modules it loaded, in the order it loaded them.
LISTING = """
import runpy, sys
sys.argv = ["mailer", "send", "--latest", "--yes"]
try:
    runpy.run_module("mailer", run_name="__main__")
finally:
    print("modules:", " ".join(sys.modules), file=sys.stderr)
"""

# The send in steps: the modules of the listing imported first, then the command, its
# render timed where mailer.issues calls it. Prints the seconds of each as JSON.
STEPS = """
import importlib, json, sys, time
start, start_cpu = time.perf_counter(), time.process_time()
import mailer.cli.app
pause = getattr(mailer.cli.app, "pause_collector", None)  # as main() does, where it does
if pause is not None:
    pause()
for name in sys.argv[1].split():
    try:
        importlib.import_module(name)
    except Exception:  # an alias or a module made at run time: its package loads it
        pass
imported, imported_cpu = time.perf_counter(), time.process_time()
import mailer.cli, mailer.issues
renders = []
render = mailer.issues.render_article_issue
def timed_render(*args, **kwargs):
    began = time.perf_counter(), time.process_time()
    try:
        return render(*args, **kwargs)
    finally:
        renders.append((time.perf_counter() - began[0], time.process_time() - began[1]))
mailer.issues.render_article_issue = timed_render
sys.argv = ["mailer", "send", "--latest", "--yes"]
try:
    mailer.cli.main()
finally:
    done, done_cpu = time.perf_counter(), time.process_time()
    steps = {
        "imports": (imported - start, imported_cpu - start_cpu),
        "command": (done - imported, done_cpu - imported_cpu),
        "render": (sum(wall for wall, _ in renders), sum(cpu for _, cpu in renders)),
    }
    print("steps:", json.dumps(steps), file=sys.stderr)
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
# What every send pays whatever mailer does: the ORM its models are built on, loaded
# with the cycle collector paused, as mailer's start does.
FLOOR = [PYTHON, "-c", "import gc; gc.disable(); import sqlalchemy.orm, sqlmodel"]


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


def send_modules(db: Path, folder: Path, port: int) -> list[str]:
    """The modules one send loads, in the order it loaded them (a package before its
    modules)."""
    env = environment(fresh(db, folder, 997), port)
    _, output = timed([PYTHON, "-c", LISTING], folder, env)
    names = output.rpartition("modules: ")[2].split()
    return [name for name in names if not name.startswith("__") and name != "mailer.__main__"]


def send_steps(db: Path, folder: Path, port: int, runs: int) -> dict[str, tuple[float, float]]:
    """Median seconds (wall, CPU) of the send's steps: its imports, its command, the
    render in it."""
    modules = " ".join(send_modules(db, folder, port))
    found: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in range(runs):
        env = environment(fresh(db, folder, 900 + run), port)
        _, output = timed([PYTHON, "-c", STEPS, modules], folder, env)
        for step, seconds in json.loads(output.rpartition("steps: ")[2]).items():
            found[step].append((seconds[0], seconds[1]))
    if not all(wall for wall, _ in found["render"]):
        raise SystemExit(
            "the steps' send rendered nothing: is render_article_issue still "
            "called as mailer.issues.render_article_issue?"
        )
    return {
        step: (
            statistics.median(wall for wall, _ in seconds),
            statistics.median(cpu for _, cpu in seconds),
        )
        for step, seconds in found.items()
    }


@dataclass
class Package:
    own: float = 0.0  # ms, the self time of its modules
    outermost: float = 0.0  # ms, the cumulative time of its imports from other packages
    modules: int = 0
    first_by: str = ""  # who imported it first


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "mailer" else parts[0]


def import_profile(db: Path, folder: Path, port: int) -> dict[str, Package]:
    """Import time of everything one send loads (python -X importtime, which adds its
    own overhead), by package: self time, and cumulative time where another package
    imported it (what loading it cost, what it pulled in included)."""
    env = environment(fresh(db, folder, 999), port)
    command = [PYTHON, "-X", "importtime", "-m", "mailer", "send", "--latest", "--yes"]
    _, output = timed(command, folder, env)
    entries = []  # (depth, module, self us, cumulative us), a module's imports before it
    for line in output.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)", line)
        if found:
            own, cumulative, indent, name = found.groups()
            entries.append((len(indent), name, int(own), int(cumulative)))
    packages: dict[str, Package] = defaultdict(Package)
    parents: list[tuple[int, str]] = []  # the entries enclosing the one at hand
    for depth, name, own, cumulative in reversed(entries):  # a parent before its imports
        while parents and parents[-1][0] >= depth:
            parents.pop()
        package = packages[package_of(name)]
        package.own += own / 1e3
        package.modules += 1
        parent = parents[-1][1] if parents else "(the command)"
        if package_of(parent) != package_of(name):
            package.outermost += cumulative / 1e3
            package.first_by = parent
        parents.append((depth, name))
    return dict(packages)


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
        floor = median_of(runs, FLOOR, folder, env)
        cli = median_of(runs, CLI, folder, env)
        helped = median_of(runs, HELP, folder, env)
        steps = send_steps(db, folder, controller.port, runs)
        packages = import_profile(db, folder, controller.port)
    send = statistics.median(sends)
    verdict = "PASS" if send <= TARGET else "FAIL"
    imports, command, render = steps["imports"], steps["command"], steps["render"]
    rest = (command[0] - render[0], command[1] - render[1])
    rows: list[tuple[str, float | None, float | None]] = [
        ("python -c pass", bare, cpu_of(BARE)),
        ("floor: import sqlalchemy.orm, sqlmodel (no gc)", floor, cpu_of(FLOOR)),
        ("python -c 'import mailer.cli'", cli, cpu_of(CLI)),
        ("mailer --help", helped, cpu_of(HELP)),
        ("mailer send --latest --yes, one reader", send, cpu_of(SEND)),
        ("its parts: the send in steps, in a process of its own", None, None),
        ("  interpreter (python -c pass)", bare, cpu_of(BARE)),
        ("  imports (every module the send loads)", *imports),
        ("  the command, after its imports", *command),
        ("    first render (templates, CSS inlined)", *render),
        ("    the rest: settings, database, queue, SMTP", *rest),
    ]
    print(f"Start-up, median of {runs} runs (send runs: {', '.join(f'{s:.3f}' for s in sends)})")
    print(f"  {'':<50} {'wall':>7}    {'CPU':>7}")
    for label, seconds, cpu in rows:
        took = f"{seconds * 1000:7.0f} ms" if seconds is not None else ""
        used = f"{cpu * 1000:7.0f} ms" if cpu is not None else ""
        print(f"  {label:<50} {took} {used}".rstrip())
    print("Imports by package, the send's process (-X importtime, ms; cumulative: where another")
    print("package imported it, what it pulled in included, so the column does not add up):")
    print(f"  {'package':<24} {'self':>7} {'cumul.':>7} {'modules':>7}  first imported by")
    ranked = sorted(packages.items(), key=lambda kv: -kv[1].own)[:25]
    for package, found in ranked:
        print(
            f"  {package:<24} {found.own:7.1f} {found.outermost:7.1f} {found.modules:7d}  "
            f"{found.first_by}"
        )
    total = sum(found.own for found in packages.values())
    print(f"  {'all':<24} {total:7.1f} {'':>7} {sum(f.modules for f in packages.values()):7d}")
    print(f"Target: a one-reader send <= {TARGET * 1000:.0f} ms: {verdict} ({send * 1000:.0f} ms)")
    note(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
