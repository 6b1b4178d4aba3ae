"""Figures: ``nnctl plot RUN_DIR`` and ``nnctl eval --plot FILE``, rendered from real training runs.

Each figure is checked as a file a user would open: a PNG with a valid signature and IHDR header,
sensible pixel dimensions and size; an SVG that parses as XML; a PDF with its header. matplotlib is
optional (``nnctl[plot]``): the tests that draw skip when it is absent, and one test checks the
message a user without it gets.
"""

from __future__ import annotations

import csv
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.errors import NnctlError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = ["loss.png", "loss.svg", "metric.png", "metric.svg", "lr.png", "lr.svg"]


def cli(*args: object) -> tuple[int, str]:
    result = CliRunner(env=ENV).invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"nnctl {args} raised {result.exception!r}\n{result.output}")
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    return result.exit_code, output


def train(config: Path, out: Path, *sets: str) -> Path:
    args: list[object] = ["train", config, "--out", out, "--quiet"]
    for assignment in sets:
        args += ["--set", assignment]
    code, output = cli(*args)
    assert code == 0, output
    return out


@pytest.fixture
def mpl() -> None:
    pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short real run with validation and a changing learning rate (cosine after warmup)."""
    out = tmp_path_factory.mktemp("plots") / "iris"
    return train(
        CONFIGS / "iris.yaml",
        out,
        "training.epochs=15",
        "training.optimizer=adam",
        "training.learning_rate=0.02",
        "training.schedule={name: cosine, warmup_epochs: 2}",
    )


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature and chunk layout."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name}: not a PNG (starts {data[:8]!r})"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR"), f"{path.name}: first chunk is {kind!r}, length {length}"
    width, height = struct.unpack(">II", data[16:24])
    assert data.endswith(b"IEND\xaeB`\x82"), f"{path.name}: truncated (no IEND chunk)"
    return width, height


def assert_good_png(path: Path) -> None:
    width, height = png_size(path)
    assert 200 <= width <= 4000 and 200 <= height <= 4000, (path.name, width, height)
    assert path.stat().st_size > 5_000, (path.name, path.stat().st_size)


def assert_good_svg(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg"), root.tag
    assert path.stat().st_size > 5_000
    return root


def svg_text(root: ET.Element) -> str:
    return " ".join(t for element in root.iter() for t in (element.text, element.get("id")) if t)


# -- nnctl plot RUN_DIR --------------------------------------------------------------------------


def test_plot_run_writes_every_figure(mpl: None, iris_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures"  # does not exist yet: plot creates it
    code, output = cli("plot", iris_run, "--out", out)
    assert code == 0, output
    for name in FIGURES:
        assert f"wrote {out / name}" in output
        assert (out / name).is_file(), name
    for name in FIGURES:
        if name.endswith(".png"):
            assert_good_png(out / name)
        else:
            assert_good_svg(out / name)
    # nothing else left behind (no temporary files from the atomic writes)
    assert sorted(p.name for p in out.iterdir()) == sorted(FIGURES)


def test_plot_run_defaults_to_the_run_folder_and_returns_paths(mpl: None, iris_run: Path) -> None:
    from nnctl.cli.plots import plot_run

    written = plot_run(iris_run)
    assert written == [iris_run / name for name in FIGURES]
    for path in written:
        assert path.stat().st_size > 5_000


def test_plot_figures_show_their_curves(mpl: None, iris_run: Path, tmp_path: Path) -> None:
    """The loss figure has a train and a validation curve with a legend; the others their labels."""
    import matplotlib

    from nnctl.cli.plots import plot_run

    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as <text>, readable back
        plot_run(iris_run, tmp_path)
    loss = ET.parse(tmp_path / "loss.svg").getroot()
    texts = [e.text for e in loss.iter() if e.tag.endswith("text") and e.text]
    assert "train" in texts and "validation" in texts, texts  # the legend's two entries
    assert "epoch" in texts
    assert "legend_1" in {e.get("id") for e in loss.iter()}
    metric = svg_text(ET.parse(tmp_path / "metric.svg").getroot())
    assert "validation accuracy" in metric
    lr = svg_text(ET.parse(tmp_path / "lr.svg").getroot())
    assert "learning rate" in lr
    assert "legend_1" not in {e.get("id") for e in ET.parse(tmp_path / "lr.svg").getroot().iter()}


def history_columns(run: Path) -> dict[str, list[float]]:
    with (run / "history.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {name: [float(row[name]) for row in rows] for name in rows[0]}


def plotted(figure: object) -> dict[str, tuple[list[float], list[float]]]:
    """label -> (x data, y data) of every line on the figure's one axes."""
    (axes,) = figure.axes  # type: ignore[attr-defined]
    return {
        line.get_label(): ([float(v) for v in line.get_xdata()], [float(v) for v in line.get_ydata()])
        for line in axes.get_lines()
    }


def test_plotted_lines_are_the_history(mpl: None, iris_run: Path) -> None:
    """Every curve's points are history.csv's numbers: epochs on x, the column on y."""
    from nnctl.cli.plots import run_figures

    columns = history_columns(iris_run)
    epochs = columns["epoch"]
    assert epochs == list(range(1, 16))
    figures = run_figures(iris_run)
    assert list(figures) == ["loss", "metric", "lr"]
    assert plotted(figures["loss"]) == {
        "train": (epochs, columns["train_loss"]),
        "validation": (epochs, columns["val_loss"]),
    }
    assert plotted(figures["metric"]) == {"validation accuracy": (epochs, columns["val_accuracy"])}
    assert plotted(figures["lr"]) == {"learning rate": (epochs, columns["lr"])}
    assert len(set(columns["lr"])) > 2  # warmup then cosine: a curve, not a flat line


def test_regression_and_no_validation_plot_their_own_columns(mpl: None, tmp_path: Path) -> None:
    from nnctl.cli.plots import run_figures

    run = train(CONFIGS / "diabetes.yaml", tmp_path / "diabetes", "training.epochs=4")
    columns = history_columns(run)
    assert plotted(run_figures(run)["metric"]) == {"validation r2": (columns["epoch"], columns["val_r2"])}

    run = train(CONFIGS / "iris.yaml", tmp_path / "noval", "training.epochs=3", "data.validation=0")
    columns = history_columns(run)
    figures = run_figures(run)
    assert list(figures) == ["loss", "lr"]
    assert plotted(figures["loss"]) == {"train": (columns["epoch"], columns["train_loss"])}


def test_regression_run_plots_r2(mpl: None, tmp_path: Path) -> None:
    run = train(CONFIGS / "diabetes.yaml", tmp_path / "diabetes", "training.epochs=5")
    code, output = cli("plot", run)
    assert code == 0, output
    for name in FIGURES:
        assert (run / name).exists(), name
    assert_good_png(run / "metric.png")


def test_run_without_validation_plots_loss_and_lr_only(mpl: None, tmp_path: Path) -> None:
    run = train(CONFIGS / "iris.yaml", tmp_path / "noval", "training.epochs=4", "data.validation=0")
    from nnctl.cli.plots import plot_run

    written = plot_run(run, tmp_path / "fig")
    assert [p.name for p in written] == ["loss.png", "loss.svg", "lr.png", "lr.svg"]
    assert_good_png(tmp_path / "fig" / "loss.png")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("", "no epoch or train_loss column"),
        ("epoch,train_loss,val_loss,lr,seconds\n", "holds no epochs"),
        ("hello world\n1 2 3\n", "not an nnctl history file"),
        ("epoch,train_loss,lr\n1,0.5,0.1\n2,banana,0.1\n", "train_loss = 'banana' is not a number"),
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00garbage", "cannot read the training history"),
    ],
    ids=["missing", "empty", "header-only", "not-csv", "bad-number", "binary"],
)
def test_bad_history_is_one_clear_error(tmp_path: Path, content: str | bytes | None, message: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    history = run / "history.csv"
    if isinstance(content, bytes):
        history.write_bytes(content)
    elif content is not None:
        history.write_text(content)
    code, output = cli("plot", run)
    assert code == 2, output
    assert str(history) in output.replace("\n", ""), output
    assert message in output, output
    assert not list(run.glob("*.png"))


def test_plot_of_a_missing_folder(tmp_path: Path) -> None:
    code, output = cli("plot", tmp_path / "nope")
    assert code == 2
    assert "no such run folder" in output


def test_failed_render_leaves_earlier_figure_whole(
    mpl: None, iris_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The atomic write: a render that dies half-way leaves the previous file and no temp file."""
    from matplotlib.figure import Figure

    from nnctl.cli.plots import plot_run

    (tmp_path / "loss.png").write_bytes(b"previous figure")

    def half_then_fail(self: Figure, handle: object, **kwargs: object) -> None:
        handle.write(b"\x89PNG half")  # type: ignore[attr-defined]
        raise RuntimeError("renderer died")

    monkeypatch.setattr(Figure, "savefig", half_then_fail)
    with pytest.raises(NnctlError, match="renderer died"):
        plot_run(iris_run, tmp_path)
    assert (tmp_path / "loss.png").read_bytes() == b"previous figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]


# -- nnctl eval --plot FILE ------------------------------------------------------------------------


def test_eval_plot_confusion_matrix_png(mpl: None, iris_run: Path, tmp_path: Path) -> None:
    figure = tmp_path / "cm.png"
    code, output = cli("eval", iris_run / "best.npz", "--plot", figure)
    assert code == 0, output
    assert "confusion matrix" in output  # the table is still printed
    assert_good_png(figure)


def test_eval_plot_svg_is_labelled_with_classes_and_counts(mpl: None, iris_run: Path, tmp_path: Path) -> None:
    import json

    figure = tmp_path / "cm.svg"
    code, output = cli("eval", iris_run / "best.npz", "--plot", figure, "--json")
    assert code == 0, output
    result, _ = json.JSONDecoder().raw_decode(output[output.index("{") :])  # then "wrote ..." (stderr)
    assert_good_svg(figure)
    # Text as <text> elements (not glyph paths) so the labels can be read back from the SVG.
    import matplotlib

    from nnctl.cli.plots import plot_confusion_matrix

    with matplotlib.rc_context({"svg.fonttype": "none"}):
        plot_confusion_matrix(result, tmp_path / "cm_text.svg")
    text = svg_text(ET.parse(tmp_path / "cm_text.svg").getroot())
    for name in result["classes"]:
        assert name in text, name
    for count in {str(c) for row in result["confusion_matrix"] for c in row}:
        assert count in text.split(), count
    assert "predicted class" in text and "true class" in text


def test_eval_plot_pdf_and_binary_classes(mpl: None, tmp_path: Path) -> None:
    run = train(CONFIGS / "breast_cancer.yaml", tmp_path / "bc", "training.epochs=3")
    figure = tmp_path / "cm.pdf"
    code, output = cli("eval", run / "best.npz", "--plot", figure)
    assert code == 0, output
    data = figure.read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-64:]
    assert len(data) > 5_000


def test_eval_plot_of_regression_draws_predictions_not_a_confusion_matrix(mpl: None, tmp_path: Path) -> None:
    # issue 14: regression gets predicted-vs-true (FILE) and residuals (FILE-residuals); their data are
    # checked in test_eval_report.py
    run = train(CONFIGS / "diabetes.yaml", tmp_path / "diabetes", "training.epochs=2")
    code, output = cli("eval", run / "best.npz", "--plot", tmp_path / "cm.png")
    assert code == 0, output
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "cm-residuals.png").exists()


def test_eval_plot_refuses_unknown_format(iris_run: Path, tmp_path: Path) -> None:
    code, output = cli("eval", iris_run / "best.npz", "--plot", tmp_path / "cm.jpg")
    assert code == 2
    assert "'.jpg'" in output and ".png" in output
    assert not (tmp_path / "cm.jpg").exists()


def test_confusion_matrix_without_class_names(mpl: None, tmp_path: Path) -> None:
    from nnctl.cli.plots import plot_confusion_matrix

    result = {"task": "classification", "classes": None, "confusion_matrix": [[5, 1], [2, 7]]}
    path = plot_confusion_matrix(result, tmp_path / "cm.png")
    assert path == tmp_path / "cm.png"
    assert_good_png(path)


# -- matplotlib is optional ------------------------------------------------------------------------


def test_missing_matplotlib_gives_a_clear_message(
    iris_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail

    from nnctl.cli.plots import plot_confusion_matrix, plot_run

    with pytest.raises(NnctlError) as caught:
        plot_run(iris_run, tmp_path)
    assert caught.value.message.startswith("matplotlib is not installed")
    assert (
        caught.value.hint
        == "pip install matplotlib (the plot extra; in nnctl's checkout: pip install -e '.[plot]')"
    )
    result = {"task": "classification", "classes": ["a", "b"], "confusion_matrix": [[1, 0], [0, 1]]}
    with pytest.raises(NnctlError, match="matplotlib is not installed"):
        plot_confusion_matrix(result, tmp_path / "cm.png")

    code, output = cli("plot", iris_run, "--out", tmp_path)
    assert code == 2
    assert "matplotlib is not installed" in output and "pip install matplotlib" in output
    code, output = cli("eval", iris_run / "best.npz", "--plot", tmp_path / "cm.png")
    assert code == 2
    assert "pip install matplotlib" in output
    assert list(tmp_path.iterdir()) == []


def test_importing_nnctl_does_not_import_matplotlib() -> None:
    code = "import sys, nnctl.cli.app, nnctl.cli.plots; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
