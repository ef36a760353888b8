"""Site-wide middleware: who served the response, and failed stores."""

from django.conf import settings

from labcore.errors import dependency_failure, store_unavailable_response


class ServedByMiddleware:
    """Stamp every response with the instance that produced it.

    It is the outermost middleware, so error responses carry it too.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response["X-Served-By"] = settings.INSTANCE_NAME
        return response


class StoreFailureMiddleware:
    """Answer 503, naming the store, when a view's store does not answer."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        failure = dependency_failure(exception)
        if failure is None:
            return None
        return store_unavailable_response(request, failure)
