"""The command line's skeleton: --help, --version, every subcommand's --help has an example."""

import subprocess
import sys

import pytest

from imusic import __version__
from imusic.cli import COMMANDS, build_parser, main


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_available_commands():
    out = subprocess.run([sys.executable, "-m", "imusic", "--help"], capture_output=True,
                         text=True, check=True).stdout
    parser = build_parser()
    available = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    for name in available:
        assert name in out


@pytest.mark.parametrize("name", COMMANDS)
def test_each_available_command_has_help_with_example(name, capsys):
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    assert name in choices, f"imusic {name} is listed in COMMANDS but has no module"
    with pytest.raises(SystemExit):
        main([name, "--help"])
    out = capsys.readouterr().out
    assert "example:" in out and f"imusic {name}" in out
