from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher


class TunablePBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's PBKDF2 hasher with PASSWORD_ITERATIONS rounds.

    A login costs about 0.6 s of CPU with Django's 1,500,000 rounds. The load
    test lowers them, so that a storm of logins after a kill measures the
    session store rather than the hash. Stored hashes carry their own count,
    so both kinds verify.
    """

    @property
    def iterations(self):
        return settings.PASSWORD_ITERATIONS
