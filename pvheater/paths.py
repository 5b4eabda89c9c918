"""Where the data files live, in a checkout and in an installed wheel."""

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT_DIR = _PACKAGE_DIR.parent
_INSTALLED_DATA = _PACKAGE_DIR / "_data"


def registers_dir() -> Path:
    """Return the folder with the register map YAML files."""
    installed = _INSTALLED_DATA / "registers"
    return installed if installed.is_dir() else _CHECKOUT_DIR / "registers"


def packaged_config() -> Path:
    """Return the config.yaml shipped with pvheater (the documented defaults)."""
    installed = _INSTALLED_DATA / "config.yaml"
    return installed if installed.is_file() else _CHECKOUT_DIR / "config.yaml"
