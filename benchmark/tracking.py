"""Run tracking in the tools researchers already watch: TensorBoard event files and MLflow runs.

    ctrbench run --expid DCN_tiny --tensorboard results/tensorboard    # or  tensorboard: DIR  in the config
    ctrbench run --expid DCN_tiny --mlflow file:./mlruns                # or  mlflow: URI  (any tracking URI)

Both are trainer callbacks (``on_step(step, logs)``, ``on_eval(epoch, metrics)``, ``on_end(record)``;
``close()`` always runs, also when a run fails or is pruned). They log, against the global training
step: ``train/loss`` (mean over the last ``log_steps`` steps, default 50), ``train/lr``,
``train/samples_per_second``, every validation metric of ``metrics`` at each evaluation
(``valid/<name>``), and at the end the test metrics (``test/<name>``) plus the resolved config as
hyper-parameters (TensorBoard's HParams tab, MLflow params) with the final valid/test metrics. MLflow
also stores the run record and the run log as artifacts. The run records file is not touched: it
stays the source of truth for ``report``.

TensorBoard writes one folder per run: ``<DIR>/<run_id>_seed<seed>_<YYYYmmdd-HHMMSS>``. An MLflow
``file:DIR`` URI (or a plain folder) is stored as MLflow 3 accepts it: a SQLite store ``DIR/mlflow.db``
with the artifacts in ``DIR/artifacts`` (MLflow 3 keeps the file store in maintenance mode and refuses it);
``mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db`` shows it. Other URIs are used as given.
The libraries are optional extras (``pip install 'ctrbench[track]'``); a flag whose library is missing
is a one-line error naming the extra.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import time
import urllib.parse
import urllib.request

from .errors import CTRBenchError

log = logging.getLogger("ctrbench")

DEFAULT_TENSORBOARD_DIR = os.path.join("results", "tensorboard")
_SKIP_HPARAMS = {
    "model_id",
    "config_dir",
    "model_root",
    "data_root",
    "build_root",
    "train_data",
    "valid_data",
    "test_data",
    "feature_cols",
    "label_col",
    "feature_specs",
    "verbose",
    "tensorboard",
    "mlflow",
    "download",
}
_NOT_METRICS = ("epoch", "step", "lr", "evaluation")
EXTRAS = {"optuna": "tune", "tensorboard": "track", "mlflow": "track"}


def require(module: str, flag: str, package: str | None = None):
    """Import an optional dependency or raise the one-line error naming the extra that provides it."""
    package = package or module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CTRBenchError(
            f"{flag} needs the '{package}' package, which is not installed; "
            f"install it with: pip install 'ctrbench[{EXTRAS.get(package, 'track')}]'"
        )


def _scalar(value):
    """A config value as a hyper-parameter: numbers and strings as they are, the rest as JSON."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float, str)):
        return value
    return json.dumps(value, default=str)


def hparams(params: dict) -> dict:
    """The resolved config as flat hyper-parameters (paths, feature specs and internals left out)."""
    return {
        k: _scalar(v) for k, v in sorted(params.items()) if not k.startswith("_") and k not in _SKIP_HPARAMS
    }


class TensorBoardCallback:
    """Scalars and hparams of one run in ``log_dir`` (torch's SummaryWriter)."""

    def __init__(self, log_dir: str, params: dict):
        tb = require("torch.utils.tensorboard", "--tensorboard", "tensorboard")
        self.log_dir = log_dir
        self.params = params
        self.writer = tb.SummaryWriter(log_dir=log_dir)
        self.step = 0
        self._closed = False

    def on_step(self, step: int, logs: dict) -> None:
        self.step = step
        for key in ("loss", "lr", "samples_per_second"):
            if logs.get(key) is not None and math.isfinite(float(logs[key])):
                self.writer.add_scalar(f"train/{key}", float(logs[key]), step)

    def on_eval(self, epoch: int, metrics: dict) -> None:
        step = self.step = max(self.step, int(metrics.get("step", self.step)))
        for name, value in metrics.items():
            if name not in _NOT_METRICS:
                self.writer.add_scalar(f"valid/{name}", float(value), step)
        self.writer.add_scalar("valid/epoch", float(epoch), step)
        self.writer.flush()

    def on_end(self, record: dict) -> None:
        step = self.step
        final = {}
        for split in ("valid", "test"):
            for name, value in (record.get(split) or {}).items():
                final[f"hparam/{split}_{name}"] = float(value)
                if split == "test":
                    self.writer.add_scalar(f"test/{name}", float(value), step)
        final["hparam/best_epoch"] = float(record.get("best_epoch") or 0)
        self.writer.add_hparams(hparams(self.params), final, run_name=".")
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.writer.flush()
            self.writer.close()


def mlflow_store(uri: str) -> tuple[str, str | None]:
    """(tracking URI, artifact location of new experiments) for ``uri``: ``file:DIR`` or a folder becomes a
    SQLite store ``DIR/mlflow.db`` with artifacts in ``DIR/artifacts``; any other URI is kept (None)."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise CTRBenchError(f"--mlflow {uri}: a file: URI names a local folder, e.g. file:./mlruns")
        path = urllib.request.url2pathname(parsed.path)
    elif parsed.scheme == "":
        path = uri
    else:
        return uri, None
    folder = os.path.abspath(path)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise CTRBenchError(f"--mlflow {uri}: {folder} is a file; give a folder for the MLflow store")
    os.makedirs(folder, exist_ok=True)
    return f"sqlite:///{os.path.join(folder, 'mlflow.db')}", urllib.parse.urljoin(
        "file:", urllib.request.pathname2url(os.path.join(folder, "artifacts"))
    )


class MLflowCallback:
    """Params, per-step metrics and the record/log artifacts of one run in an MLflow tracking store."""

    def __init__(self, uri: str, params: dict, run_name: str, log_file: str | None = None):
        self.mlflow = require("mlflow", "--mlflow")
        tracking_uri, artifacts = mlflow_store(uri)
        if tracking_uri != uri:
            log.info(
                "MLflow: %s is stored in %s (mlflow ui --backend-store-uri %s)",
                uri,
                tracking_uri,
                tracking_uri,
            )
        self.mlflow.set_tracking_uri(tracking_uri)
        name = str(params.get("dataset_id", "ctrbench"))
        if artifacts and self.mlflow.get_experiment_by_name(name) is None:
            try:
                self.mlflow.create_experiment(name, artifact_location=artifacts)
            except self.mlflow.exceptions.MlflowException:  # created at the same moment by a parallel run
                if self.mlflow.get_experiment_by_name(name) is None:
                    raise
        self.mlflow.set_experiment(name)
        self.run = self.mlflow.start_run(run_name=run_name)
        self.log_file = log_file
        self.step = 0
        self._closed = False
        self.mlflow.set_tags(
            {
                "expid": params.get("expid"),
                "model": params.get("model"),
                "seed": params.get("seed"),
                "ctrbench.run_id": run_name,
            }
        )
        values = {k: str(v)[:250] for k, v in hparams(params).items()}
        self.mlflow.log_params(values)

    def on_step(self, step: int, logs: dict) -> None:
        self.step = step
        metrics = {
            f"train/{k}": float(logs[k])
            for k in ("loss", "lr", "samples_per_second")
            if logs.get(k) is not None and math.isfinite(float(logs[k]))
        }
        self.mlflow.log_metrics(metrics, step=step)

    def on_eval(self, epoch: int, metrics: dict) -> None:
        step = self.step = max(self.step, int(metrics.get("step", self.step)))
        values = {f"valid/{k}": float(v) for k, v in metrics.items() if k not in _NOT_METRICS}
        values["valid/epoch"] = float(epoch)
        self.mlflow.log_metrics(values, step=step)

    def on_end(self, record: dict) -> None:
        values = {
            f"final_{split}/{k}": float(v)
            for split in ("valid", "test")
            for k, v in (record.get(split) or {}).items()
        }
        values["best_epoch"] = float(record.get("best_epoch") or 0)
        self.mlflow.log_metrics(values, step=self.step)
        self.mlflow.log_dict(record, "record.json")
        if self.log_file and os.path.isfile(self.log_file):
            self.mlflow.log_artifact(self.log_file)
        self._end("FINISHED")

    def _end(self, status: str) -> None:
        if not self._closed:
            self._closed = True
            self.mlflow.end_run(status=status)

    def close(self) -> None:
        self._end("FAILED")  # only still open when the run did not reach its record


def tensorboard_dir(params: dict, flag: str | None = None) -> str | None:
    """``flag`` (the --tensorboard folder) or the config's ``tensorboard`` (a folder, or true for the
    default folder)."""
    value = flag or params.get("tensorboard")
    if value in (None, False, "", "false", "False", "none", "None"):
        return None
    return DEFAULT_TENSORBOARD_DIR if value is True or str(value).lower() == "true" else str(value)


def callbacks_for(
    params: dict,
    run_id: str,
    log_file: str | None = None,
    tensorboard: str | None = None,
    mlflow: str | None = None,
) -> list:
    """The tracking callbacks the run's config or the flags (``tensorboard`` folder, ``mlflow`` URI) ask
    for (none by default)."""
    callbacks = []
    directory = tensorboard_dir(params, tensorboard)
    if directory:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        callbacks.append(
            TensorBoardCallback(
                os.path.join(os.path.abspath(directory), f"{run_id}_seed{params.get('seed', 2023)}_{stamp}"),
                params,
            )
        )
    uri = mlflow or params.get("mlflow")
    if uri:
        callbacks.append(
            MLflowCallback(str(uri), params, f"{run_id}_seed{params.get('seed', 2023)}", log_file)
        )
    return callbacks
