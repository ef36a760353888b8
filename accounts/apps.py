from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in


def start_idle_clock(sender, request, user, **kwargs):
    from accounts.middleware import start_clocks

    start_clocks(request)


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        user_logged_in.connect(start_idle_clock, dispatch_uid="accounts.start_idle_clock")
