"""Create users straight in the database: for load tests, which must not sign up over HTTP.

Reads {"usernames": [...], "password": "..."} as JSON on stdin (a password
on the command line would show in `ps`). Every user gets the same password,
hashed once; users that exist already are left as they are. Only someone
who can run this with the site's settings (its database credentials) can,
so it is no way past the per-address sign-up limit for anyone else.
"""

import json
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = 'Create users from {"usernames": [...], "password": "..."} on stdin (load tests).'

    def handle(self, *args, **options):
        try:
            wanted = json.load(sys.stdin)
            usernames, password = list(wanted["usernames"]), str(wanted["password"])
        except (ValueError, KeyError, TypeError) as error:
            raise CommandError(f'stdin must be {{"usernames": [...], "password": "..."}}: {error}') from None
        model = get_user_model()
        hashed = make_password(password)
        model.objects.bulk_create([model(username=name, password=hashed) for name in usernames],
                                  batch_size=500, ignore_conflicts=True)
