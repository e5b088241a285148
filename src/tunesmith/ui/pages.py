"""The read-only pages: Runs (table, one run live, compare two), Evaluate, Data."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from markupsafe import Markup

from tunesmith.errors import TunesmithError
from tunesmith.reporting.chart import line_chart
from tunesmith.ui import data, evals, runs
from tunesmith.ui.app import error_page, json_error, render, root

COLUMNS = (("method", "method"), ("adapter", "adapter"), ("status", "status"), ("global_step", "steps"),
           ("best_eval_loss", "best eval loss"), ("train_loss", "train loss"))


def curve_svg(series: dict[str, list[tuple[float, float]]], title: str) -> Markup:
    return Markup(line_chart(series, title=title, x_label="step", y_label="loss", markers=True))


def register(app: FastAPI) -> None:
    _runs(app)
    _eval_and_data(app)


def _runs(app: FastAPI) -> None:
    @app.get("/runs", response_class=HTMLResponse)
    def runs_page(request: Request) -> HTMLResponse:
        found = runs.find(root(request))
        return render("runs.html.jinja", "runs", title="Runs", rows=found, columns=COLUMNS, root=str(root(request)))

    @app.get("/runs/view", response_class=HTMLResponse)
    def run_page(request: Request, run: str = "") -> HTMLResponse:
        try:
            path = runs.resolve(root(request), run)
        except TunesmithError as exc:
            return error_page("runs", "Run", exc, 404)
        try:
            record, progress = runs.find_one(root(request), path), runs.progress(path)
            chart, config = curve_svg(runs.curves(path), f"{run}: loss"), runs.config_text(path)
        except TunesmithError as exc:
            return error_page("runs", f"Run {run}", exc)
        return render("run.html.jinja", "runs", title=f"Run {run}", run=run, row=record, progress=progress,
                      chart=chart, config=config, others=[r.name for r in runs.find(root(request)) if r.name != run])

    @app.get("/api/progress")
    def progress(request: Request, run: str = "") -> JSONResponse:
        try:
            path = runs.resolve(root(request), run)
        except TunesmithError as exc:
            return json_error(exc, 404)
        try:
            return JSONResponse({**runs.progress(path), "chart": str(curve_svg(runs.curves(path), f"{run}: loss"))})
        except TunesmithError as exc:
            return json_error(exc)

    @app.get("/runs/compare", response_class=HTMLResponse)
    def compare_page(request: Request, a: str = "", b: str = "") -> HTMLResponse:
        try:
            pa, pb = runs.resolve(root(request), a), runs.resolve(root(request), b)
        except TunesmithError as exc:
            return error_page("runs", "Compare runs", exc, 404)
        try:
            series = {f"{name}: {label}": points for name, path in ((a, pa), (b, pb))
                      for label, points in runs.curves(path).items()}
            ra, rb = runs.find_one(root(request), pa), runs.find_one(root(request), pb)
            diff = runs.config_diff(runs.config_of(pa), runs.config_of(pb))
        except TunesmithError as exc:
            return error_page("runs", "Compare runs", exc)
        return render("compare.html.jinja", "runs", title=f"{a} vs {b}", a=a, b=b,
                      chart=curve_svg(series, f"{a} vs {b}: loss"),
                      summary=runs.side_by_side(ra.record, rb.record) + [("gate", ra.gate, rb.gate)], diff=diff)


def _eval_and_data(app: FastAPI) -> None:
    @app.get("/eval", response_class=HTMLResponse)
    def eval_page(request: Request, folder: str = "", left: str = "", right: str = "", filter: str = "all",
                  task: str = "") -> HTMLResponse:
        available = evals.folders(root(request))
        if not folder:
            if not available:
                return render("eval.html.jinja", "eval", title="Evaluate", folders=available, folder="", view=None,
                              error=None)
            folder = available[0]
        try:
            path = evals.resolve(root(request), folder)
            default_left, default_right = evals.default_pair(evals.names(path))
            view = evals.view(path, left or default_left, right or default_right, filter, task)
        except TunesmithError as exc:  # the folder picker stays, to choose another folder
            return render("eval.html.jinja", "eval", status=400, title=f"Evaluate {folder}", folders=available,
                          folder=folder, view=None, error=str(exc))
        return render("eval.html.jinja", "eval", title=f"Evaluate {folder}", folders=available, folder=folder,
                      view=view, error=None)

    @app.get("/data", response_class=HTMLResponse)
    def data_page(request: Request, run: str = "", rows: int = 5) -> HTMLResponse:
        found = [r.name for r in runs.find(root(request))]
        if not run:
            return render("data.html.jinja", "data", title="Data", runs=found, run="", audit=None, preview=None)
        try:
            path = runs.resolve(root(request), run)
            audit, preview = data.audit(path), data.preview(path, max(0, min(rows, 50)))
        except TunesmithError as exc:
            return error_page("data", "Data", exc)
        return render("data.html.jinja", "data", title=f"Data of {run}", runs=found, run=run, audit=audit,
                      preview=preview)
