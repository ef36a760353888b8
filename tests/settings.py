"""The site's settings, with what a test run must not take from the shell."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key")
os.environ["STATE_DIR"] = tempfile.mkdtemp(prefix="lab-tests-")

from labsite.settings import *  # noqa: E402,F403

# A fast hasher: the tests log in hundreds of times; hashing strength is not under test.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
