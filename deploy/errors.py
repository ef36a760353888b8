"""The one error deploy reports: what went wrong, and what to do, in one line."""


class DeployError(Exception):
    """A failure to report to the user in one line."""
