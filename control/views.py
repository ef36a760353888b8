"""The page and its JSON interface; thin: each view checks its input and calls the room (control/room.py)."""

import asyncio
import json
import threading
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from control import actions as page_actions
from control.experiments import HARNESS, RUN_ID, parser_of
from control.form import fault_rows, fields_of, up_fields
from control.load import MAX_USERS
from control.room import Room

STREAM_EVERY = 0.25  # seconds between two looks for new events, per open stream
KEEPALIVE = 15.0  # seconds: a comment line on a quiet stream, so proxies and browsers keep it open

_room = None
_room_lock = threading.Lock()


def room():
    """The process's one Room, watching CONTROL_STATE_DIR; started on first use."""
    global _room
    with _room_lock:
        if _room is None:
            _room = Room(state_dir=settings.CONTROL_STATE_DIR, runs_dir=settings.CONTROL_RUNS_DIR).start()
        return _room


def close():
    """Stop the room if it was started (the load's final reads recorded, the run closed)."""
    with _room_lock:
        if _room is not None:
            _room.close()


@require_GET
@ensure_csrf_cookie
def index(request):
    return render(request, "control/index.html", {
        "up_fields": up_fields(), "faults": fault_rows(), "max_users": MAX_USERS,
        "experiments": [{"name": name, "fields": [f for f in fields_of(parser_of(name)) if f["key"] != "out"]}
                        for name in HARNESS],
        "state_dir": settings.CONTROL_STATE_DIR})


@require_GET
async def state(request):
    return JsonResponse(await asyncio.to_thread(lambda: room().state()))


@require_GET
async def events(request):
    """Server-sent events: each `data:` line one line of the followed run's history, from its header on.

    The run followed is a running experiment's, else the cluster's (Room.source).

    The header (type "header") starts each run, so a page knows to start
    its timeline again when a new run opens.
    """
    current = await asyncio.to_thread(room)
    return StreamingHttpResponse(_stream(current), content_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _stream(current):
    """The lines of the followed run as they come; the room's lock is taken in a thread, never on the loop.

    (A start or stop under way may hold that lock for a while; the loop
    serves every other request and stream meanwhile.) The run's own lines
    are read on the loop: its lock is held only while a line is appended.
    """
    run, sent, quiet = None, 0, 0.0
    while True:
        lines, sent = run.lines_from(sent) if run else ([], 0)
        if lines:
            quiet = 0.0
            yield "".join(f"data: {line}\n\n" for line in lines)
        source = await asyncio.to_thread(current.source)
        if source is not run:  # a new run, after the last lines of the one before
            run, sent = source, 0
            continue
        if quiet >= KEEPALIVE:
            quiet = 0.0
            yield ": quiet\n\n"
        await asyncio.sleep(STREAM_EVERY)
        quiet += STREAM_EVERY


@require_POST
async def actions(request):
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "the body is not JSON"}, status=400)
    try:
        event = await asyncio.to_thread(page_actions.handle, room(), body)
    except page_actions.ActionError as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse({"id": event}, status=202)


@require_GET
def report(request, run_id):
    """A finished run's report.html, from the control room's runs folder; 404 for anything else."""
    path = Path(settings.CONTROL_RUNS_DIR) / run_id / "report.html"
    if not RUN_ID.match(run_id) or not path.is_file():
        raise Http404(f"no report for {run_id!r}")
    return FileResponse(path.open("rb"), content_type="text/html")


def csrf_failure(request, reason=""):
    return JsonResponse({"error": f"refused without the page's CSRF token ({reason}): send the csrftoken "
                                  "cookie's value as X-CSRFToken"}, status=403)
