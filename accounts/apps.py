from django.apps import AppConfig
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_save


def start_idle_clock(sender, request, user, **kwargs):
    from accounts.middleware import start_clocks

    start_clocks(request)


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        from accounts.middleware import forget_user

        user_logged_in.connect(start_idle_clock, dispatch_uid="accounts.start_idle_clock")
        post_save.connect(forget_user, sender=get_user_model(), dispatch_uid="accounts.forget_user")
