from django.urls import path

from chat import api

urlpatterns = [
    path("rooms/<str:room>/messages", api.messages, name="api-messages"),
    path("rooms/<str:room>/presence", api.presence, name="api-presence"),
]
