"""The one error base for everything a user can cause, and its kinds.

A ``LakemlError`` is an expected failure whose message is the whole story: a wrong conf key,
a bad argument, a table that was never made, a server that does not answer, a model that
fails its gate. Jobs catch exactly this class in one place (``lakeml.cli.main``), print
``error: <message>`` and exit 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LakemlError(Exception):
    """Something a user caused or can fix; the message says what and how."""


class ConfigError(LakemlError):
    """A configuration problem; the message names the file and the key."""


class UsageError(LakemlError):
    """A wrong command-line argument, or an operation that cannot be done as asked."""


class MissingTableError(LakemlError):
    """A table a stage needs does not exist (or is empty); the message says how to make it."""


class MissingDataError(LakemlError):
    """Data a stage needs is not there: a date, a batch, a model alias, an empty landing zone."""


class SchemaDriftError(LakemlError):
    """Landed files have columns conf does not declare and their source says
    ``schema_drift: fail``; the message names the files and the columns."""


class SetupError(LakemlError):
    """Something ``make setup`` installs is missing (jars, the venv, a Debian package)."""


def first_line(e: BaseException) -> str:
    """The message of a Spark or JVM error without its trace: its first non-empty line (a
    parse error's message starts with a newline); the error's class name when it has none."""
    return next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
