"""What each command does, without the terminal: plan and run training, evaluate, predict.

The CLI parses arguments, calls these functions and renders their results; they raise
``NnctlError`` subclasses for bad input and never print.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnctl.checkpoint import Checkpoint, load_checkpoint
from nnctl.config import Config, apply_override, load_config, validate_config
from nnctl.data.load import load_table
from nnctl.data.normalize import Normalizer
from nnctl.data.table import missing_column, preview
from nnctl.data.tabular import is_tabular, read_table, target_values
from nnctl.data.targets import TargetEncoder
from nnctl.errors import CheckpointError, ConfigError, DataError, NnctlError, did_you_mean
from nnctl.runs import FolderLock, RunFolder, RunWriter, relocate_data_path
from nnctl.training.evaluate import evaluate
from nnctl.training.loop import Callback, Trainer
from nnctl.training.monitor import best_epoch_monitor
from nnctl.training.prepare import Prepared, Split, build_network, network_from_checkpoint, prepare
from nnctl.training.resume import trainer_from_checkpoint

# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainPlan:
    config: Config
    config_dir: Path | None
    folder: RunFolder
    resume: Checkpoint | None = None
    init_from: Checkpoint | None = None
    warnings: list[str] = field(default_factory=list)
    lock: FolderLock | None = None  # held from planning until ``release``

    def release(self) -> None:
        """Unlock the run folder (and remove it if this run created it and wrote nothing)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None


@dataclass
class TrainResult:
    folder: RunFolder
    history: list[dict[str, Any]]
    best_epoch: int
    best_value: float | None
    monitor: str
    stopped_early: bool
    test_metrics: dict[str, Any] | None
    written: list[Path]
    task: str


def plan_training(
    config_path: Path | None,
    overrides: Sequence[str] = (),
    *,
    out: Path | None = None,
    resume: Path | None = None,
    force: bool = False,
    init_from: Path | None = None,
    deterministic: bool = False,
) -> TrainPlan:
    """Validate everything that can be checked before data is read; decide the run folder."""
    if resume is not None and init_from is not None:
        raise NnctlError(
            "--resume and --init-from exclude each other",
            hint="--resume continues a run; --init-from starts a new one from its weights",
        )
    if resume is not None:
        checkpoint = load_checkpoint(resume)
        config = resumed_config(checkpoint, config_path, overrides)
        folder = RunFolder(out if out is not None else resume.parent)
        moved = out is not None and folder.path.resolve() != resume.parent.resolve()
        config_dir = None
    else:
        if config_path is None:
            raise NnctlError("missing CONFIG", hint="nnctl train CONFIG (or --resume CHECKPOINT)")
        config = load_config(config_path, overrides)
        config_dir = config_path.parent
        folder = RunFolder(out if out is not None else Path("runs") / (config.name or config_path.stem))
        checkpoint, moved = None, False
    if deterministic and not config.training.deterministic:
        config = config.model_copy(
            update={"training": config.training.model_copy(update={"deterministic": True})}
        )
    lock = folder.lock()  # before the checkpoint check: a folder in use is refused even with --force
    try:
        if (checkpoint is None or moved) and folder.has_checkpoint() and not force:
            raise _folder_taken(folder)
        return TrainPlan(
            config,
            config_dir,
            folder,
            resume=checkpoint,
            init_from=load_checkpoint(init_from) if init_from is not None else None,
            warnings=config.warnings(),
            lock=lock,
        )
    except BaseException:
        lock.release()
        raise


def _folder_taken(folder: RunFolder) -> NnctlError:
    return NnctlError(
        f"{folder.path} already holds a checkpoint",
        hint="pass --force to overwrite it, --resume to continue it, or --out to train elsewhere",
    )


def resumed_config(checkpoint: Checkpoint, config_path: Path | None, overrides: Sequence[str]) -> Config:
    """The checkpoint's own config; only ``training.epochs`` may change (to extend the run)."""
    stored = checkpoint.config.model_dump(mode="json")
    if config_path is not None:
        wanted = load_config(config_path).model_dump(mode="json")
        wanted["name"] = stored["name"]
    else:
        wanted = checkpoint.config.model_dump(mode="json")
    if wanted["data"].get("target") is None:  # the stored config names the column it used
        wanted["data"]["target"] = stored["data"].get("target")
    for assignment in overrides:
        apply_override(wanted, assignment)
    config = validate_config(wanted, "--resume")
    changed = _differences(stored, config.model_dump(mode="json"))
    changed.discard("training.epochs")
    changed.discard("training.trace")  # diagnostics only: the same arithmetic either way
    changed.discard("data.path")  # relative to different folders; the data themselves are checked on load
    if changed:
        raise ConfigError(
            f"--resume keeps the checkpoint's config, but these keys differ: {', '.join(sorted(changed))}",
            hint="only training.epochs may change when resuming; to train with other settings, "
            "start a new run (optionally with --init-from CHECKPOINT)",
        )
    return config


def _differences(a: Any, b: Any, prefix: str = "") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return set().union(
            *(_differences(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k) for k in keys)
        )
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return set().union(
            set(), *(_differences(x, y, f"{prefix}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=False)))
        )
    return set() if a == b else {prefix}


def prepare_for_plan(plan: TrainPlan) -> Prepared:
    """Read the data (from the checkpoint's recorded location when resuming) and check it fits."""
    if plan.resume is None:
        return prepare(plan.config, plan.config_dir)
    checkpoint = plan.resume
    prepared = prepare_checkpoint_data(plan.config, checkpoint)
    prepared.config = plan.config
    if not (
        np.array_equal(prepared.normalizer.shift, checkpoint.norm_shift)
        and np.array_equal(prepared.normalizer.scale, checkpoint.norm_scale)
        and prepared.feature_names == checkpoint.feature_names
        and prepared.preprocessing == checkpoint.preprocessing
    ):
        raise DataError(
            f"{prepared.source}: the data differ from those the checkpoint was trained on",
            hint="resume needs the same data file; start a new run for new data",
        )
    return prepared


def locate_data(checkpoint: Checkpoint) -> str:
    """Where the checkpoint's training data are now: the absolute path recorded at training time,
    else ``data.path`` relative to the checkpoint's folder (run folders store it that way), else
    relative to the current folder."""
    written = checkpoint.config.data.path
    if written.startswith("builtin:"):
        return written
    candidates = [checkpoint.meta.get("data_path"), written]
    if checkpoint.path is not None:
        candidates.insert(1, str(checkpoint.path.parent / written))
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    raise DataError(
        f"the checkpoint's data file {written} is not there any more",
        hint="pass the data explicitly (nnctl eval CHECKPOINT --data FILE)",
    )


def prepare_checkpoint_data(config: Config, checkpoint: Checkpoint) -> Prepared:
    """``config``'s splits of the data the checkpoint was trained on, wherever they are now."""
    data = config.data.model_copy(update={"path": locate_data(checkpoint)})
    numeric_only = checkpoint.meta.get("format_version", 1) < 2
    return prepare(config.model_copy(update={"data": data}), None, numeric_only=numeric_only)


def resolve_for_folder(config: Config, prepared: Prepared, folder: Path) -> Config:
    """The config as the run folder stores it: ``data.path`` relative to that folder (so its
    config.yaml and checkpoints stay usable from anywhere and after the project moves) and
    ``data.target`` naming the target column(s) actually used."""
    names = prepared.target_names
    if config.data.target is None and names:
        target = names[0] if len(names) == 1 else list(names)
        config = config.model_copy(update={"data": config.data.model_copy(update={"target": target})})
    return relocate_data_path(config, prepared.source, folder)


def run_training(
    plan: TrainPlan, prepared: Prepared, callbacks: Sequence[Callback] = ()
) -> tuple[Trainer, RunWriter]:
    """Build the trainer (fresh, resumed or fine-tuned) with a RunWriter first among the callbacks."""
    plan.folder.ensure_writable()
    earlier = plan.folder.read_history(plan.resume.epoch) if plan.resume is not None else []
    if plan.resume is not None and not earlier and plan.resume.path is not None:
        earlier = RunFolder(plan.resume.path.parent).read_history(plan.resume.epoch)
    writer = RunWriter(plan.folder, earlier)
    all_callbacks = [writer, *callbacks]
    plan.config = resolve_for_folder(plan.config, prepared, plan.folder.path)
    prepared.config = plan.config
    if plan.resume is not None:
        best = _load_best(plan.resume)
        moved = (
            plan.resume.path is not None and plan.resume.path.parent.resolve() != plan.folder.path.resolve()
        )
        if best is not None and moved:
            writer.pending_best = best  # the new folder starts with the run's best so far
        trainer = trainer_from_checkpoint(plan.resume, prepared, all_callbacks, best)
        trainer.config = plan.config
        trainer.prepared.config = plan.config
    else:
        net = build_network(plan.config, prepared.train.n_features, class_weights=prepared.class_weights)
        if plan.init_from is not None:
            copy_weights(plan.init_from, net)
        trainer = Trainer(prepared, net, callbacks=all_callbacks)
    return trainer, writer


def _load_best(checkpoint: Checkpoint) -> Checkpoint | None:
    if checkpoint.path is None:
        return None
    best = checkpoint.path.parent / "best.npz"
    if not best.exists() or best.resolve() == checkpoint.path.resolve():
        return checkpoint if best.exists() else None
    with contextlib.suppress(CheckpointError):
        return load_checkpoint(best)
    return None


def copy_weights(source: Checkpoint, net: Any) -> None:
    """Fine-tuning: take the weights only, after checking every shape fits."""
    if len(source.weights) != len(net.layers):
        raise CheckpointError(
            f"{source.path}: has {len(source.weights)} layers, the config builds {len(net.layers)}",
            hint="--init-from needs the same architecture",
        )
    for index, (layer, W, b) in enumerate(
        zip(net.layers, source.weights, source.biases, strict=True), start=1
    ):
        if W.shape != layer.W.shape:
            raise CheckpointError(
                f"{source.path}: W{index} has shape {W.shape}, "
                f"but layer {index} of this config needs {layer.W.shape}",
                hint="--init-from needs the same layer sizes and input features",
            )
        layer.W[...] = W
        layer.b[...] = b


@contextlib.contextmanager
def blas_threads(deterministic: bool) -> Iterator[None]:
    """Pin BLAS to one thread for bit-reproducible results (threadpoolctl), else leave it."""
    if not deterministic:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def finish_training(trainer: Trainer, writer: RunWriter) -> TrainResult:
    """Evaluate the best weights on the test split and collect what the summary shows."""
    prepared = trainer.prepared
    test_metrics = None
    if prepared.test is not None:
        best = load_checkpoint(writer.folder.best) if writer.folder.best.exists() else None
        net = network_from_checkpoint(best) if best is not None else trainer.net
        test_metrics = evaluate(net, prepared.test, prepared.task, trainer.n_classes)
    return TrainResult(
        folder=writer.folder,
        history=writer.rows,
        best_epoch=trainer.loop.best_epoch,
        best_value=trainer.loop.best_value,
        monitor=trainer.monitor,
        stopped_early=trainer.loop.stopped_early,
        test_metrics=test_metrics,
        written=writer.written,
        task=prepared.task,
    )


# ---------------------------------------------------------------------------------------------
# Evaluation and prediction


def encoder_of(checkpoint: Checkpoint) -> TargetEncoder:
    units = checkpoint.config.model.layers[-1].units
    return TargetEncoder(task=checkpoint.meta["task"], classes=checkpoint.classes, output_units=units)


def normalizer_of(checkpoint: Checkpoint) -> Normalizer:
    return Normalizer(checkpoint.config.data.normalize, checkpoint.norm_shift, checkpoint.norm_scale)


def checkpoint_split(checkpoint: Checkpoint, data: Path | None) -> tuple[Split, str, list[str]]:
    """The rows to evaluate: FILE's rows, or the checkpoint's own test split; and notes on the
    rows left out (a missing target)."""
    if data is None:
        prepared = prepare_checkpoint_data(checkpoint.config, checkpoint)
        if prepared.test is None:
            raise NnctlError(
                f"{checkpoint.path}: its config holds out no test split (data.test = 0)",
                hint="pass rows to evaluate with --data FILE",
            )
        return prepared.test, f"test split of {prepared.source}", prepared.notes
    encoder = encoder_of(checkpoint)
    dtype = np.dtype(checkpoint.config.dtype)
    if reads_raw_rows(checkpoint, data):
        rows = raw_rows(checkpoint, data, require_target=True)
        x, y, notes = rows.x, rows.y, rows.notes
    else:
        table = load_table(str(data), checkpoint.target_names, feature_names=checkpoint.feature_names)
        x, y, notes = table.x, table.y, []
    x = normalizer_of(checkpoint).apply(x, dtype)
    t = encoder.encode(y, source=str(data)).astype(dtype)
    return Split(x, t), str(data), notes


def reads_raw_rows(checkpoint: Checkpoint, data: Path) -> bool:
    """Raw table rows, preprocessed as the checkpoint says (format 2 and a CSV/Parquet file); else
    the numeric columns ``feature_names`` exactly (format 1, .npz, folders, builtins)."""
    if checkpoint.meta.get("format_version", 1) >= 2 and is_tabular(data):
        return True
    assert checkpoint.preprocessing is not None
    if not checkpoint.preprocessing.is_identity:
        raise DataError(
            f"{data}: this model encodes table columns ({', '.join(checkpoint.preprocessing.input_names)}); "
            "give its rows as a .csv or .parquet table"
        )
    return False


@dataclass
class RawRows:
    x: np.ndarray  # encoded inputs, (n, len(feature_names)), not yet normalized
    y: np.ndarray | None  # raw targets of the rows kept, or None
    notes: list[str]


def raw_rows(checkpoint: Checkpoint, path: Path, *, require_target: bool) -> RawRows:
    """A table's rows encoded by the checkpoint's preprocessing: its input columns in any order,
    other columns ignored. With ``require_target`` the target columns must be there and rows
    whose target is missing are left out (and counted); else targets are ignored."""
    preprocessing = checkpoint.preprocessing
    assert preprocessing is not None
    raw = read_table(
        Path(path), delimiter=checkpoint.config.data.delimiter, missing_values=preprocessing.missing_values
    )
    by_name = {column.name: column for column in raw.columns if column.name}
    names = list(by_name)
    for name in preprocessing.input_names:
        if name not in by_name:
            raise missing_column(raw.source, name, names, "needs as an input", preprocessing.input_names)
    rows = np.arange(raw.n_rows)
    notes: list[str] = []
    y = None
    if require_target:
        for name in checkpoint.target_names:
            if name not in by_name:
                raise DataError(
                    f"{raw.source}: no target column '{name}'; columns: {preview(names)}",
                    hint=did_you_mean(name, names) or "evaluation needs the target column",
                )
        targets = [by_name[name] for name in checkpoint.target_names]
        keep = ~np.logical_or.reduce([column.missing for column in targets])
        rows = np.flatnonzero(keep)
        dropped = raw.n_rows - rows.size
        if dropped:
            notes.append(f"left out {dropped} row{'s' * (dropped != 1)} whose target is missing")
        if rows.size == 0:
            raise DataError(f"{raw.source}: every row's target is missing")
        y = target_values([c.take(rows) for c in targets], lambda r, c: raw.locate(int(rows[r]), c))
    columns = {name: by_name[name].take(rows) for name in preprocessing.input_names}
    x = preprocessing.encode_columns(columns, lambda r, c: raw.locate(int(rows[r]), c))
    return RawRows(x, y, notes)


def predict_table(
    path: Path, input_path: Path, threshold: float | None = None
) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of predictions for INPUT: labels (or values) plus per-class probabilities.
    ``threshold``: a one-output binary model predicts the positive class when p >= threshold."""
    checkpoint = load_checkpoint(path)
    encoder = encoder_of(checkpoint)
    if threshold is not None and not (encoder.task == "classification" and encoder.output_units == 1):
        raise NnctlError(
            f"--threshold applies to binary classifiers with one output unit; {path} is "
            f"{encoder.task} with {encoder.output_units} output units"
        )
    if reads_raw_rows(checkpoint, input_path):
        x = raw_rows(checkpoint, input_path, require_target=False).x
    else:
        x = load_table(
            str(input_path),
            checkpoint.target_names,
            feature_names=checkpoint.feature_names,
            require_target=False,
        ).x
    net = network_from_checkpoint(checkpoint)
    x = normalizer_of(checkpoint).apply(x, np.dtype(checkpoint.config.dtype))
    outputs = net.forward(x).astype(np.float64)
    return prediction_rows(encoder, checkpoint.target_names, outputs, threshold)


def prediction_rows(
    encoder: TargetEncoder, target_names: list[str], outputs: np.ndarray, threshold: float | None = None
) -> tuple[list[str], list[list[Any]]]:
    decoded = encoder.decode(outputs)
    if threshold is not None and encoder.classes is not None:
        decoded = np.asarray(encoder.classes, dtype=np.str_)[(outputs[:, 0] >= threshold).astype(np.int64)]
    if encoder.task == "classification":
        classes = encoder.classes or []
        probabilities = (
            np.column_stack([1.0 - outputs[:, 0], outputs[:, 0]]) if outputs.shape[1] == 1 else outputs
        )
        header = [target_names[0] if target_names else "label", *(f"p_{c}" for c in classes)]
        rows = [[str(label), *map(_num, probs)] for label, probs in zip(decoded, probabilities, strict=True)]
        return header, rows
    if encoder.task == "multilabel":
        header = [*target_names, *(f"p_{name}" for name in target_names)]
        return header, [
            [*map(int, labels), *map(_num, probs)] for labels, probs in zip(decoded, outputs, strict=True)
        ]
    return list(target_names), [[*map(_num, values)] for values in outputs]


def _num(value: float) -> str:
    return repr(float(value))  # shortest text that reads back as the same number


def check_summary(config_path: Path, overrides: Sequence[str] = ()) -> tuple[Config, Prepared, Any]:
    """Validate a config against its data and build (but not train) its network: every refusal
    ``nnctl train`` makes before its first step (the trainer's monitor check included)."""
    config = load_config(config_path, overrides)
    prepared = prepare(config, config_path.parent)
    net = build_network(config, prepared.train.n_features, class_weights=prepared.class_weights)
    best_epoch_monitor(config, prepared.task, prepared.validation is not None)
    return config, prepared, net
