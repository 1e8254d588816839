from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medfed.report.plots import _round_axes, _shared_legend


def test_round_axes_have_integer_ticks_and_labels() -> None:
    figure = Figure()
    axis = figure.subplots()
    axis.plot([1, 2, 3], [0.1, 0.5, 0.6])
    _round_axes(axis, "dice")
    FigureCanvasAgg(figure).draw()
    assert all(tick == int(tick) for tick in axis.get_xticks())
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("round", "dice")


def test_a_single_round_gets_integer_ticks_too() -> None:
    figure = Figure()
    axis = figure.subplots()
    axis.plot([2], [0.5], marker=".")
    _round_axes(axis, "dice")
    FigureCanvasAgg(figure).draw()
    ticks = [tick for tick in axis.get_xticks() if axis.get_xlim()[0] <= tick <= axis.get_xlim()[1]]
    assert ticks and all(tick == int(tick) for tick in ticks) and 2 in ticks


def test_one_legend_lists_every_curve_of_every_panel_once() -> None:
    figure = Figure(layout="constrained")
    left, right = figure.subplots(1, 2)
    left.plot([1, 2], [0, 1], label="fedavg")
    right.plot([1, 2], [0, 1], label="fedavg")
    right.plot([1, 2], [1, 0], label="local-a")
    _shared_legend(figure, [left, right])
    assert [[text.get_text() for text in legend.get_texts()] for legend in figure.legends] == [
        ["fedavg", "local-a"]
    ]
