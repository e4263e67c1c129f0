"""The project's version, recorded in exported models (and whatever else should say what made it)."""
import os
import subprocess

__version__ = "1.0.0"


def project_version():
    """``__version__``, with the git commit when this checkout is a git repository (``1.0.0+7163c2e``)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__
