"""Refuse any request that is not the page's own: a foreign Host (400) or a foreign Origin (403), on every path.

Django checks Host against ALLOWED_HOSTS only where something asks for
it, and its CSRF check looks at Origin only on unsafe methods; this
middleware, first in the chain, does both for every request, static files
and the event stream included, so a page the user happens to visit can
neither read the control room's state nor act through the browser.
"""

from django.http import JsonResponse


class LoopbackOnly:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        host = request.get_host()  # DisallowedHost: Django answers 400
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{host}":
            return JsonResponse({"error": f"requests from {origin} are refused: the control room answers "
                                          "its own page only"}, status=403)
        return self.get_response(request)
