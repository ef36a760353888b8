from django.conf import settings
from django.contrib.auth import authenticate, login
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.views import LoginView as DjangoLoginView
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts import throttle
from accounts.tokens import issue_token
from labcore.api import ApiError, api_view, error_response, optional_text, read_form_or_json, require_int, require_text

LOCKED_OUT = "too many failed logins from your address; try again in a few minutes"


@require_http_methods(["GET", "POST"])
def signup(request):
    """Django's sign-up form, throttled per client address (accounts/throttle.py)."""
    form = UserCreationForm(request.POST or None)
    if request.method != "POST":
        return render(request, "accounts/signup.html", {"form": form})
    reserved = throttle.reserve_sign_up(request)
    if not reserved.allowed:
        form.add_error(None, sign_ups_refused())
        return render(request, "accounts/signup.html", {"form": form}, status=429)
    with throttle.given_back_if_a_store_fails(reserved.address_key):
        if not form.is_valid():
            throttle.sign_up_refused(reserved)
            return render(request, "accounts/signup.html", {"form": form})
        user = form.save()
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect(settings.LOGIN_REDIRECT_URL)


def sign_ups_refused():
    return (f"too many sign-ups from your address: at most {settings.SIGNUP_MAX_PER_ADDRESS} per "
            f"{settings.SIGNUP_WINDOW:g} s (SIGNUP_MAX_PER_ADDRESS per SIGNUP_WINDOW); try again later")


class LoginView(DjangoLoginView):
    """Django's login, throttled per (username, address) and per address.

    The attempt is reserved before the form checks the password; a failure
    keeps its reservation, which is how it is counted.
    """

    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        self.attempt = throttle.reserve(request, request.POST.get("username", ""))
        if not self.attempt.allowed:
            form = self.get_form()
            form.add_error(None, LOCKED_OUT)
            return self.render_to_response(self.get_context_data(form=form), status=429)
        self.logged_in = False
        with throttle.given_back_if_a_store_fails(self.attempt.user_key, self.attempt.address_key):
            response = super().post(request, *args, **kwargs)  # a store failing in the login gives the slots back
        if self.logged_in:  # outside the block: slots are given back once, by one or the other
            throttle.succeeded(self.attempt)
        return response

    def form_valid(self, form):
        response = super().form_valid(form)
        self.logged_in = True
        return response


@api_view("GET")
def me(request):
    return JsonResponse(
        {
            "username": request.user.get_username(),
            "instance": settings.INSTANCE_NAME,
            "session_store": settings.SESSION_STORE,
            "presence_store": settings.PRESENCE_STORE,
            "auth": getattr(request, "auth_method", "session"),
        }
    )


@api_view("GET", "POST")
def session_counter(request):
    """Write a counter and a room into the user's own session, or read them back.

    The load test's measure of acknowledged session writes: every 200 to a
    POST is a promise that the session holds these values, checked after a
    store fails over (a failed save is a 503, never a 200). A POST also
    answers the counter it found (`previous`), so a writer sees at once
    that the store went back to an older session.
    """
    previous = (request.session.get("lab_counter") or {}).get("counter")
    if request.method == "POST":
        data = read_form_or_json(request)
        request.session["lab_counter"] = {
            "counter": require_int(data, "counter"), "room": optional_text(data, "room")[:100],
        }
    stored = request.session.get("lab_counter") or {"counter": None, "room": ""}
    return JsonResponse({**stored, "previous": previous, "instance": settings.INSTANCE_NAME})


@api_view("POST", login_required=False, csrf=False)
def token(request):
    """Trade a username and password for a signed, expiring bearer token."""
    data = read_form_or_json(request)
    username, password = require_text(data, "username"), require_text(data, "password")
    for name, value in (("username", username), ("password", password)):
        if not value:
            raise ApiError(400, f"'{name}' is empty")
    attempt = throttle.reserve(request, username)
    if not attempt.allowed:
        return error_response(429, LOCKED_OUT)
    with throttle.given_back_if_a_store_fails(attempt.user_key, attempt.address_key):
        user = authenticate(request, username=username, password=password)
    if user is None:
        return error_response(401, "wrong username or password")
    throttle.succeeded(attempt)
    return JsonResponse(
        {"token": issue_token(user), "token_type": "Bearer", "expires_in": settings.API_TOKEN_MAX_AGE}
    )
