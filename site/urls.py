from django.urls import include, path

from labsite import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("accounts/", include("accounts.urls")),
    path("api/", include("accounts.api_urls")),
    path("api/", include("chat.api_urls")),
    path("", include("maintenance.urls")),
    path("", include("chat.urls")),
]

handler400 = "labsite.errors.bad_request"
handler404 = "labsite.errors.not_found"
handler500 = "labsite.errors.server_error"
