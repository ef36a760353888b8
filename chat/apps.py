import logging

from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_out

logger = logging.getLogger(__name__)


def leave_presence(sender, user, **kwargs):
    """Take a user off every online list at once when they log out.

    Presence is soft state: if the store is down, the entries expire on
    their own within the TTL, so the logout goes ahead.
    """
    from chat.presence import presence_store
    from labcore.stores import StoreUnavailable

    if user is None:
        return
    try:
        presence_store().leave_everywhere(user.get_username())
    except StoreUnavailable as failure:
        logger.warning("logout of %s left presence to expire: %s", user.get_username(), failure)


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self):
        from chat import live
        from chat.presence import presence_store
        from labcore.health import liveness_figure, readiness_check
        from labcore.serving import on_serve

        user_logged_out.connect(leave_presence, dispatch_uid="chat.leave_presence")
        readiness_check("presence", lambda: presence_store().check())
        liveness_figure("sockets", live.count)
        on_serve(live.install, asgi_only=True)
