"""The command line imports only the module of the command it runs: help and --hash-password never load torch,
nor the console's web server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines.cli import COMMANDS, build_parser

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
#: what a help or --hash-password must not load: the model stack and the console's server
HEAVY = ("torch", "torchaudio", "onnx", "fastapi", "uvicorn")


def imported_modules(importtime_stderr: str) -> set[str]:
    """Module names from the `-X importtime` report (lines `import time: self | cumulative | name`)."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime_stderr.splitlines() if line.startswith("import time:")}


def test_every_help_answers_without_torch():
    script = ("import sys\nfrom pipelines.cli import COMMANDS, main\n"
              "for argv in [['--help'], *([name, '--help'] for name in COMMANDS)]:\n"
              "    try:\n        main(argv)\n    except SystemExit as stop:\n        assert stop.code == 0, argv\n"
              f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
    for name in COMMANDS:  # each command's own options were printed, not a stub
        assert f"usage: agad-stream {name} " in result.stdout


def test_hash_password_prints_a_bcrypt_hash_without_importing_torch():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipelines.cli", "console", "--hash-password"],
                            input="correct horse\n", capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("$2b$")
    modules = imported_modules(result.stderr)
    assert "bcrypt" in modules and not modules & set(HEAVY)


def test_the_command_table_lists_what_each_module_registers():
    parser = build_parser()  # every module registers its real commands
    subparsers = next(a for a in parser._actions if a.dest == "command")
    registered = {action.dest: action.help for action in subparsers._choices_actions}
    assert registered == {name: help_text for name, (_, help_text) in COMMANDS.items()}
