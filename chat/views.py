from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.shortcuts import redirect, render
from django.urls import reverse

from chat import services
from chat.models import ROOM_SLUG


@login_required
def rooms(request):
    """List the rooms; `?name=` joins (or opens) a room by name."""
    error = None
    name = request.GET.get("name")
    if name is not None:
        try:
            ROOM_SLUG(name)
        except ValidationError:
            error = f"{ROOM_SLUG.message.capitalize()}."
        else:
            return redirect("chat:room", room=name)
    return render(
        request,
        "chat/rooms.html",
        {"rooms": services.room_list(), "error": error, "name": name or ""},
        status=400 if error else 200,
    )


@login_required
def room(request, room):
    return render(
        request,
        "chat/room.html",
        {
            "room": room,
            "config": {
                "room": room,
                "username": request.user.get_username(),
                "heartbeatInterval": settings.PRESENCE_HEARTBEAT_INTERVAL,
                "loginUrl": f"{reverse(settings.LOGIN_URL)}?next={request.path}",
                # Under an ASGI server the page tries the WebSocket first (chat/consumers.py).
                "socket": isinstance(request, ASGIRequest),
            },
        },
    )
