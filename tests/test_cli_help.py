"""The command line as a newcomer meets it: a fast top-level help, every option described with its default."""

import argparse
import subprocess
import sys

import pytest

from study.commands.cli import COMMANDS, build_parser

HEAVY = ("torch", "mlflow", "optuna", "pandas", "sklearn")


def test_top_level_help_imports_no_heavy_library():
    code = (
        "import sys\nfrom study.commands.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "study" in out and "report" in out  # the commands are listed
    assert out.strip().splitlines()[-1] == "[]"


def _options(command: str) -> list[argparse.Action]:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices[command]._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_is_described(command):
    undescribed = [a.dest for a in _options(command) if not (a.help or "").strip()]
    assert not undescribed


@pytest.mark.parametrize(
    "command,shown",
    [
        ("train", ["--epochs EPOCHS", "(default: 160)", "one of densenet-bc100, densenet16", "resnet32", "vgg11"]),
        ("study", ["(default: quick)", "(default: runs)", "RETHINK_STORAGE"]),
        ("report", ["(default: reports)", "(default: runs)"]),
        ("prune", ["lottery", "thinet", "(default: global)"]),
        ("best", ["(default: quick)"]),
        ("serve", ["(default: 5000)", "(default: 8080)", "(default: 127.0.0.1)"]),
    ],
)
def test_help_shows_defaults_and_valid_names(command, shown, capsys):
    with pytest.raises(SystemExit):
        build_parser(command).parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for s in shown:
        assert s in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_progress_lines_show_what_exists_and_the_time_left(capsys):
    """Train loss and accuracy, images/s, epoch and ETA; the evaluation accuracy only once it was scored."""
    from rethink.train import EpochMetrics
    from study.records.progress import PrintProgress, eta

    progress = PrintProgress(4, "[x] ")
    nan = float("nan")
    for epoch, acc in ((0, nan), (1, nan), (2, nan), (3, 0.9)):
        progress.on_epoch_end(EpochMetrics(epoch, 0.1, 0.5, 0.8, nan, acc, 1234.0, 0.1), None)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and "nan" not in " ".join(lines)
    assert lines[0].startswith("[x] epoch 1/4") and "loss 0.5000" in lines[0] and "1,234 img/s" in lines[0]
    assert "ETA" in lines[0] and "ETA" not in lines[-1] and "eval acc 0.900" in lines[-1]
    assert [eta(s) for s in (42, 185, 3720)] == ["42 s", "3 min 05 s", "1 h 02 min"]
