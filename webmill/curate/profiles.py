"""Named config profiles (``curate run --profile NAME``): TOML files bundled in
``webmill/assets/profiles/`` (so they work from an installed package; ``examples/fast.toml`` is a
link to the same file, the one place for its settings).

Order of precedence, lowest first: :data:`webmill.config.DEFAULTS` → the profile → the user's
``-c`` file → command-line options.

* ``fast``: resiliparse main-content extraction (DCLM's choice, Li et al. 2024), FineWeb's rules
  unchanged; docs/fast-path.md has its measured speed and what it keeps differently.
"""

from __future__ import annotations

from pathlib import Path

from webmill.config import load_config
from webmill.errors import UserError

PROFILES_DIR = Path(__file__).resolve().parents[1] / "assets" / "profiles"


def profile_names() -> list[str]:
    """Names of the bundled profiles (file stems in :data:`PROFILES_DIR`), sorted."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def profile_path(name: str) -> Path:
    """The TOML file of profile ``name``.

    Raises:
        UserError: no such profile (lists the known ones).
    """
    p = PROFILES_DIR / f"{name}.toml"
    if not name or "/" in name or not p.is_file():
        raise UserError(f"unknown --profile {name!r}; known profiles: {', '.join(profile_names())} "
                        f"(files in {PROFILES_DIR})")
    return p


def load_profile_config(profile: str | None, path: str | Path | None = None,
                        overrides: dict | None = None) -> dict:
    """The validated config: defaults, then profile ``profile`` (None: none), then the TOML file
    at ``path``, then ``overrides`` (same nesting as the file).

    Raises:
        UserError: unknown profile, missing/unparseable file, unknown key or wrong type.
    """
    return load_config(path, overrides, base=None if profile is None else profile_path(profile))
