"""What every command shares: the two consoles, default paths, logging set-up and the common options."""

from __future__ import annotations

import logging
import os

import typer
from rich.console import Console
from rich.logging import RichHandler

from benchmark.config import PACKAGED_CONFIG_DIR


class _OutConsole(Console):
    """Standard-output console: tables never wrap when the output is piped or captured.

    Rich falls back to 80 columns off a terminal, which folds the wide tables (``data list``,
    ``report``) mid-row; ``COLUMNS`` (read at print time) wins, else piped output is 200 wide.
    """

    @property
    def size(self):
        size = super().size
        columns = os.environ.get("COLUMNS", "")
        if columns.isdigit():
            return size._replace(width=int(columns))
        if not self.is_terminal:
            return size._replace(width=max(size.width, 200))
        return size

    @size.setter
    def size(self, new_size):
        Console.size.fset(self, new_size)


console = Console(stderr=True)
out = _OutConsole()
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_config_dir() -> str:
    """``./config`` when the working directory has one, else the checkout's ``config/``, else the configs
    a non-editable install carries."""
    if os.path.isdir("config"):
        return "config"
    checkout = os.path.join(REPO, "config")
    return checkout if os.path.isdir(checkout) else PACKAGED_CONFIG_DIR


def default_results() -> str:
    return os.path.join("results", "runs.jsonl")


def setup_logging(verbose: bool = True) -> None:
    """The console shows ctrbench's INFO lines (``verbose``) or only its warnings; a run's log file gets
    every INFO line either way (the level is the console handler's, not the logger's)."""
    root = logging.getLogger()
    if not root.handlers:  # else fuxictr's first logging.info() runs basicConfig and every line prints twice
        root.addHandler(logging.NullHandler())
    logger = logging.getLogger("ctrbench")
    handler = next((h for h in logger.handlers if isinstance(h, RichHandler)), None)
    if handler is None:
        handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
        handler.addFilter(lambda record: not record.name.startswith("ctrbench.train"))
        logger.addHandler(handler)
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.setLevel(logging.INFO)


ConfigOpt = typer.Option(None, "--config", "-c", help="Config directory (FuxiCTR layout). Default: ./config")
DataRootOpt = typer.Option(None, "--data-root", help="Folder holding the raw datasets (replaces data_root).")
SetOpt = typer.Option(None, "--set", help="Override any config key: --set key=value (YAML typed).")
DebugOpt = typer.Option(False, "--debug", help="Show tracebacks.")
ResultsOpt = typer.Option(None, "--results", help="Run records file. Default: results/runs.jsonl")
GpuOpt = typer.Option(None, "--gpu", help="CUDA device index; -1 for CPU.")
