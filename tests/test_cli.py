"""The command line's top level."""
from __future__ import annotations

import pytest

import workbench
from workbench.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert workbench.__version__ in capsys.readouterr().out


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "story" in capsys.readouterr().out
