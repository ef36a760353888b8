from django.urls import path

from control import views

urlpatterns = [
    path("", views.index, name="index"),
    path("api/state", views.state, name="state"),
    path("api/events", views.events, name="events"),
    path("api/actions", views.actions, name="actions"),
    path("runs/<str:run_id>/report.html", views.report, name="report"),
]
