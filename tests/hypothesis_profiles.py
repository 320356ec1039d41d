"""Hypothesis settings profiles of the test suite.

* ``ci`` — bounded, what a plain ``pytest`` run uses for the model-based tests.
* ``long`` — a soak: ``pytest -p tests.hypothesis_profiles --hypothesis-profile=long``.

Hypothesis's pytest plugin loads ``--hypothesis-profile`` in ``pytest_configure``,
before test modules are imported, so the profile must already be registered then:
either load this module as a plugin (``-p tests.hypothesis_profiles``) or import it
from ``tests/conftest.py``. Importing it registers the profiles and changes nothing
else; in particular it never loads a profile, so other hypothesis tests keep theirs.
"""

from __future__ import annotations

from hypothesis import settings

__all__ = ["CI", "LONG", "stateful_settings"]

CI = "ci"
LONG = "long"

settings.register_profile(
    CI,
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    print_blob=True,
)
settings.register_profile(
    LONG,
    max_examples=1000,
    stateful_step_count=50,
    deadline=None,
    print_blob=True,
)


def stateful_settings() -> settings:
    """The profile chosen with ``--hypothesis-profile``, or ``ci`` if none was chosen."""
    if settings.get_current_profile_name() == "default":
        return settings.get_profile(CI)
    return settings.get_profile(settings.get_current_profile_name())
