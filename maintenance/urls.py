from django.urls import path

from maintenance import views

urlpatterns = [
    path("api/lease", views.lease_api, name="api-lease"),
    path("lease/", views.lease_page, name="lease"),
]
