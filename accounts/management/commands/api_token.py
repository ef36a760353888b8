"""Print a bearer token for a user, made without a password if it does not exist.

For the load test's audit, which must read every room however the login
throttle stands: its user has no usable password, so it cannot be logged
into over HTTP (and a user that has one is refused: whoever chose it
could log in as the audit), and its token comes only from here, with the site's
settings (SECRET_KEY). The token expires after API_TOKEN_MAX_AGE.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.tokens import issue_token


class Command(BaseCommand):
    help = "Print a bearer token for USERNAME, made without a usable password if missing."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        model = get_user_model()
        user = model.objects.filter(username=username).first()
        if user is None:
            user = model(username=username)
            user.set_unusable_password()
            user.save()
        elif user.has_usable_password():
            # Somebody could log in as it: the token would be theirs to watch or revoke.
            raise CommandError(f"{username!r} has a password: tokens from here are only for users without one")
        self.stdout.write(issue_token(user))
