"""The chat's WebSocket routes, mounted by the ASGI application (site/asgi.py)."""

from django.urls import re_path

from chat.consumers import RoomConsumer

websocket_urlpatterns = [
    re_path(r"^ws/rooms/(?P<room>[-a-zA-Z0-9_]{1,50})/$", RoomConsumer.as_asgi()),
]
