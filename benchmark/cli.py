"""The ``ctrbench`` command line (Typer): the app and the registration of every command.

The commands are plain functions in ``benchmark/commands/``, one module per job (``run.py``, ``report.py``,
``sweep.py``, ``plot.py``, ``build.py``, ...; ``common.py`` holds what they share). Every user error is a
``CTRBenchError`` (or the zoo's ``ModelConfigError``): printed as one ``error: ...`` line, exit code 2, no
traceback unless ``--debug``.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from .commands import (
    analyze,
    bench_infer,
    board,
    build,
    datasets,
    listing,
    plot,
    report,
    reproduce,
    run,
    sweep,
    tune,
)
from .commands.common import console, out
from .errors import USER_ERRORS

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="ctrbench: run, compare and reproduce CTR prediction models (built on FuxiCTR).",
)
data_app = typer.Typer(no_args_is_help=True, help="Build, generate and check datasets.")
app.add_typer(data_app, name="data")


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from . import __version__

        try:
            number = version("ctrbench")
        except PackageNotFoundError:  # run from a source tree that is not installed
            number = __version__
        out.print(f"ctrbench {number}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    pass


app.command("run")(run.run)
app.command("models")(listing.models)
app.command("expids")(listing.expids)
app.command("report")(report.report)
app.command("sweep")(sweep.sweep)
app.command("plot")(plot.plot)
app.command("reproduce")(reproduce.reproduce)
app.command("analyze")(analyze.analyze)
app.command("bench-infer")(bench_infer.bench_infer_cmd)
app.command("tune")(tune.tune)
app.command("board")(board.board)
data_app.command("build")(build.data_build)
data_app.command("verify-build")(build.data_verify_build)
data_app.command("synth")(build.data_synth)
data_app.command("list")(datasets.data_list)
data_app.command("verify")(datasets.data_verify)
data_app.command("prepare")(datasets.data_prepare)


def main() -> None:
    debug = "--debug" in sys.argv
    try:
        app()
    except USER_ERRORS as exc:
        if debug:
            raise
        # escaped: a message such as "pip install 'ctrbench[tune]'" is text, not rich markup
        console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
