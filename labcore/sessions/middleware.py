from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware

from labcore.errors import store_unavailable_response
from labcore.stores import StoreUnavailable


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's session middleware, with a 503 when saving the session fails.

    Saving happens after the view, outside the reach of process_exception.
    """

    def process_response(self, request, response):
        try:
            return super().process_response(request, response)
        except StoreUnavailable as failure:
            return store_unavailable_response(request, failure)
