#!/usr/bin/env python3
"""Bootstrap and run: `python3 tasks.py demo` (the demo farm) or `python3 tasks.py test`.

Needs Python 3.11, pip and a C compiler (engine._native): creates .venv, installs
wesfarm with its dev extras (once, and again when pyproject.toml or engine/native/
changes), then runs the command inside it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".wesfarm-installed"

COMMANDS = {
    "demo": [str(BIN / "wesfarm"), "demo"],
    "test": [str(BIN / "python"), "-m", "pytest", "-q"],
    "lint": [str(BIN / "ruff"), "check", "."],
    "typecheck": [str(BIN / "mypy")],
    "bench": [str(BIN / "wesfarm"), "bench"],
}


def ensure_env() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"wesfarm needs Python 3.11, this is {sys.version.split()[0]}")
    # Reinstall when the project or the C sources of engine._native change (the
    # editable install compiles them).
    sources = [ROOT / "pyproject.toml", *sorted((ROOT / "engine" / "native").glob("*.[ch]"))]
    want = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    if STAMP.exists() and STAMP.read_text() == want:
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    print("installing wesfarm and its dependencies into .venv (a minute or two; pip "
          "shows each package) ...", flush=True)
    subprocess.run([str(BIN / "python"), "-m", "pip", "install", "-e", f"{ROOT}[dev]"],
                   check=True)
    STAMP.write_text(want)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python3 tasks.py {{{'|'.join(COMMANDS)}}} [args...]", file=sys.stderr)
        return 2
    ensure_env()
    command = COMMANDS[sys.argv[1]] + sys.argv[2:]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
