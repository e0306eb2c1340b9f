"""The `alexnet` command as a user runs it: a subprocess of `python -m alexnet`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import alexnet
from alexnet.cli import COMMANDS, build_parser


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alexnet", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_the_verbs() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert "usage: alexnet" in result.stdout and "list-models" in result.stdout


def test_help_imports_no_verb_and_no_torch() -> None:
    """The verbs' modules import torch at their top; `alexnet --help` loads none of them."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "alexnet", "--help"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}  # fmt: skip
    assert "alexnet.cli" in imported  # the log is read right
    heavy = {m for m in imported if m.split(".")[0] in ("torch", "numpy")}
    assert not heavy and not {m for m in imported if m.startswith("alexnet.commands")}, heavy


@pytest.mark.parametrize("verb", list(COMMANDS))
def test_every_verb_has_its_help(verb: str, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser(verb).parse_args([verb, "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: alexnet {verb}")


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"alexnet {alexnet.__version__}"


def test_unknown_verb_fails_with_usage() -> None:
    result = run_cli("trian")
    assert result.returncode == 2
    assert "unknown verb 'trian' (did you mean 'train'?)" in result.stderr


def test_list_models_text() -> None:
    result = run_cli("list-models")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in result.stdout.splitlines()[1:] if line}
    # reference section 1 and 4: the paper's net, and torchvision's single-tower net at 224
    assert rows["alexnet"] == ["60,965,224", "227"]
    assert rows["alexnet_owt"] == ["61,100,840", "224"]
    assert {"caffenet", "alexnet_onegpu", "cifar_fig1", "cifar_conv_local"} <= set(rows)


def test_list_models_json() -> None:
    result = run_cli("list-models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    paper = rows["alexnet"]
    assert paper["params"] == 60_965_224 and paper["num_classes"] == 1000
    assert paper["options"]["lrn"] == "code" and paper["options"]["towers"] == 2
    assert rows["cifar_fig1"]["num_classes"] == 10 and rows["cifar_fig1"]["input_size"] == 32
