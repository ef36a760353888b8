from django.urls import include, path

from labcore import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("accounts/", include("accounts.urls")),
    path("api/", include("accounts.api_urls")),
    path("api/", include("chat.api_urls")),
    path("", include("maintenance.urls")),
    path("", include("chat.urls")),
]

handler400 = "labcore.errors.bad_request"
handler404 = "labcore.errors.not_found"
handler500 = "labcore.errors.server_error"
