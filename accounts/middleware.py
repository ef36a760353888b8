from django.http import JsonResponse

from accounts.tokens import user_for_token


class BearerTokenMiddleware:
    """Authenticate /api/ requests that carry `Authorization: Bearer <token>`.

    Such a request never loads a session: it works the same on every
    instance, and keeps working while the session store is down.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        header = request.headers.get("Authorization")
        if header and request.path.startswith("/api/"):
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return JsonResponse(
                    {"error": "the Authorization header must be 'Bearer <token>'"}, status=401
                )
            user = user_for_token(token.strip())
            if user is None:
                return JsonResponse(
                    {"error": "the bearer token is invalid or expired; get a new one at /api/token"},
                    status=401,
                )
            request.user = user
            request.auth_method = "token"
        return self.get_response(request)
