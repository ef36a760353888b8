from django.urls import path, register_converter

from chat import views


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
]
