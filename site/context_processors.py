from django.conf import settings


def status_bar(request):
    """What every page shows: the serving instance and where state lives."""
    return {
        "status": {
            "instance": settings.INSTANCE_NAME,
            "session_store": settings.SESSION_STORE,
            "presence_store": settings.PRESENCE_STORE,
        }
    }
