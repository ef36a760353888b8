from django.urls import path, register_converter

from chat import floor, views


class RoomConverter:
    regex = r"[-a-zA-Z0-9_]{1,50}"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(RoomConverter, "room")

app_name = "chat"
urlpatterns = [
    path("", views.rooms, name="rooms"),
    path("rooms/<room:room>/", views.room, name="room"),
    # Only with BENCH_VIEWS=1 (a 404 otherwise): the benchmark's floor.
    path("bench/floor/<str:name>", floor.floor, name="bench-floor"),
]
