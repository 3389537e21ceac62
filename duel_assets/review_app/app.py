"""The review page's web wiring: routes, templates and the label form. The logic is in
``duel_assets.lib.review``; this module reads requests, calls it and renders its results.

Pages: ``/`` (partitions), ``/p/<key>`` (a partition's turns, with filters and sorting),
``/p/<key>/duel?t=<turn>`` (one duel), ``/p/<key>/next`` (the next turn of the review queue) and
``POST /p/<key>/label``. Templates are ``duel_assets/templates/review/*.html`` (Jinja2, every value
escaped); the stylesheet and the script are files under ``duel_assets/static/review/``.
"""
from __future__ import annotations

import inspect
import secrets
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from urllib.parse import parse_qsl, quote

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from duel_assets.lib.export.summary import read_summaries, read_summary
from duel_assets.lib.review import duel as duel_page
from duel_assets.lib.review import partitions, turns
from duel_assets.lib.review.labels import Label, LabelRefused, LabelsFile, record
from duel_assets.lib.review.reading import Reader
from duel_assets.lib.settings import METRICS, ChainConfig, ConfigError, Paths, validate_partition_key
from duel_assets.lib.system.locks import LockTimeout
from duel_assets.lib.warehouse import WarehouseError

from .security import Guard, sign, verify

MAX_FORM_BYTES = 16_384


@dataclass
class Review:
    """What the page serves from, and who labels."""

    reader: Reader
    paths: Paths
    cfg: ChainConfig
    labels: LabelsFile
    reviewer: str
    near: float = turns.NEAR_POINTS
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    lock: threading.Lock = field(default_factory=threading.Lock)  # one warehouse read at a time

    @property
    def form_token(self) -> str:
        return sign(self.secret, "label-form")


def _templates() -> jinja2.Environment:
    folder = resources.files("duel_assets") / "templates" / "review"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.globals.update(METRICS=METRICS, FILTERS=turns.FILTERS)
    return env


class Pages:
    def __init__(self, review: Review):
        self.r = review
        self.env = _templates()

    def render(self, name: str, status: int = 200, started: float | None = None, **values) -> HTMLResponse:
        path = self.r.labels.path
        shown = str(path.relative_to(self.r.paths.home)) if path.is_relative_to(self.r.paths.home) else str(path)
        html = self.env.get_template(name).render(reviewer=self.r.reviewer, labels_path=str(path), labels_shown=shown,
                                                  labels_count=self.r.labels.count(), **values)
        resp = HTMLResponse(html, status_code=status)
        if started is not None:
            resp.headers["server-timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return resp

    def error(self, status: int, message: str) -> HTMLResponse:
        return self.render("error.html", status=status, message=message)

    def _key(self, request: Request) -> str:
        try:
            return validate_partition_key(request.path_params["key"])
        except ConfigError as e:
            raise _NotFound(str(e)) from None

    def _views(self, key: str, verdicts_etc: tuple[list, list, list]) -> tuple[list[turns.TurnView], dict]:
        summary = read_summary(self.r.paths, key)
        cut = partitions.thresholds(summary, self.r.cfg.buckets.model_dump())
        t, v, j = verdicts_etc
        views = turns.turn_views(t, v, j, cut, self.r.cfg.metric_weights, self.r.near, self.r.labels.labelled(key))
        return views, {"summary": summary, "thresholds": cut}

    # ------------------------------------------------------------ pages

    def home(self, request: Request) -> Response:
        started = time.perf_counter()
        with self.r.lock:
            figures = self.r.reader.partition_figures()
        summaries = read_summaries(self.r.paths, list(figures))
        done: dict[str, int] = {}
        for pid in self.r.labels.ids():
            key = pid.split("/", 1)[0]
            done[key] = done.get(key, 0) + 1
        rows = partitions.overview(figures, summaries, self.r.cfg.prices, done)
        return self.render("partitions.html", started=started, rows=rows, warehouse=self.r.reader.warehouse.label)

    def partition(self, request: Request) -> Response:
        started = time.perf_counter()
        key = self._key(request)
        with self.r.lock:
            data = self.r.reader.partition_turns(key)
        if not data[0] and not data[1]:
            return self.error(404, f"no turn of partition {key} is in the warehouse")
        views, extra = self._views(key, data)
        name = request.query_params.get("filter") or None
        bucket = request.query_params.get("bucket") or None
        by = request.query_params.get("sort") or "queue"
        desc = request.query_params.get("dir") == "desc"
        if (name and name not in turns.FILTERS) or by not in turns.SORTS:
            return self.error(400, f"filter {name!r} / sort {by!r}: allowed filters {', '.join(turns.FILTERS)}; "
                                   f"sorts {', '.join(turns.SORTS)}")
        shown = turns.sort_views([v for v in views if turns.matches(v, name, bucket)], by, desc)
        return self.render("partition.html", started=started, key=key, views=shown, total=len(views),
                           counts=turns.counts(views), active=name, bucket=bucket, sort=by, desc=desc,
                           queue_left=len(turns.queue(views)), notice=request.query_params.get("notice"), **extra)

    def next_turn(self, request: Request) -> Response:
        key = self._key(request)
        with self.r.lock:
            data = self.r.reader.partition_turns(key)
        views, _ = self._views(key, data)
        nxt = turns.next_after(views, request.query_params.get("after"))
        if nxt is None:
            return RedirectResponse(f"/p/{quote(key, safe='')}?notice=queue-done", status_code=303)
        return RedirectResponse(f"/p/{quote(key, safe='')}/duel?t={quote(nxt.turn_id, safe='')}", status_code=303)

    def duel(self, request: Request) -> Response:
        started = time.perf_counter()
        key = self._key(request)
        turn_id = request.query_params.get("t") or ""
        with self.r.lock:
            rows, data = self.r.reader.duel(key, turn_id)
        if rows.turn is None and rows.verdict is None:
            return self.error(404, f"turn {turn_id!r} of partition {key} is not in the warehouse")
        views, extra = self._views(key, data)
        a = secrets.choice(["challenger", duel_page.opponent_of(rows)])  # drawn for every showing
        view = duel_page.duel_view(key, rows, a, extra["thresholds"])
        me = next((v for v in views if v.turn_id == turn_id), None)
        nxt = turns.next_after(views, turn_id)
        return self.render("duel.html", started=started, d=view, me=me, next_turn=nxt, queue_left=len(turns.queue(views)),
                           shown=f"{a}.{sign(self.r.secret, key, turn_id, a)}", form_token=self.r.form_token,
                           notice=request.query_params.get("notice"), **extra)

    async def label(self, request: Request) -> Response:
        key = self._key(request)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return self.error(413, "label form too large")
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        if not verify(self.r.secret, form.get("form", ""), "label-form"):
            return self.error(403, "this label form was not issued by this review page (reload the duel)")
        turn_id = form.get("t", "")
        a_role, _, signature = form.get("shown", "").partition(".")
        if not verify(self.r.secret, signature, key, turn_id, a_role):
            return self.error(403, "the positions of this label do not match the page that was shown (reload the duel)")
        try:
            lab = Label(form.get("label", ""), a_role, form.get("metric") or None)
        except LabelRefused as e:
            return self.error(400, str(e))
        return await _in_thread(self._record, key, turn_id, lab)

    def _record(self, key: str, turn_id: str, lab: Label) -> Response:
        with self.r.lock:
            rows, data = self.r.reader.duel(key, turn_id)
        try:
            rec = record(key, rows, lab, self.r.reviewer)
        except LabelRefused as e:
            return self.error(422, str(e))
        notice = "labelled" if self.r.labels.append(rec) else "already-labelled"
        views, _ = self._views(key, data)
        nxt = turns.next_after(views, turn_id)
        if nxt is None:
            return RedirectResponse(f"/p/{quote(key, safe='')}?notice=queue-done", status_code=303)
        return RedirectResponse(f"/p/{quote(key, safe='')}/duel?t={quote(nxt.turn_id, safe='')}&notice={notice}",
                                status_code=303)


class _NotFound(Exception):
    pass


async def _in_thread(fn, *args):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def build_app(review: Review, token: str | None = None, hosts: set[str] | None = None):
    """The ASGI app: the pages behind :class:`.security.Guard` (``hosts``: the Host values accepted,
    None for any; ``token``: required on every request when given)."""
    pages = Pages(review)

    def guarded(handler):
        async def endpoint(request: Request) -> Response:
            try:
                if inspect.iscoroutinefunction(handler):
                    return await handler(request)
                return await _in_thread(handler, request)
            except _NotFound as e:
                return pages.error(404, str(e))
            except LockTimeout as e:
                return pages.error(503, f"the warehouse is busy: {e}. Reload in a moment.")
            except WarehouseError as e:
                return pages.error(500, f"cannot read the warehouse: {e}")
        return endpoint

    static = StaticFiles(directory=str(resources.files("duel_assets") / "static" / "review"))
    app = Starlette(routes=[
        Route("/", guarded(pages.home)),
        Route("/p/{key}", guarded(pages.partition)),
        Route("/p/{key}/next", guarded(pages.next_turn)),
        Route("/p/{key}/duel", guarded(pages.duel)),
        Route("/p/{key}/label", guarded(pages.label), methods=["POST"], max_body_size=MAX_FORM_BYTES),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Mount("/static", app=static, name="static"),
    ])
    return Guard(app, token, hosts)
