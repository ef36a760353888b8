from django.urls import path

from accounts import views

urlpatterns = [
    path("me", views.me, name="api-me"),
    path("token", views.token, name="api-token"),
    path("session-counter", views.session_counter, name="api-session-counter"),
]
