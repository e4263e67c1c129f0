"""The repository's own files (model_data/, img/, config/, the sample VOCdevkit/) found from any working directory."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the folder holding train.py


def resource_path(path):
    """``path`` resolved against the repository root when it is relative, missing from the working directory and
    present there (``python /repo/train.py`` run from elsewhere); otherwise ``path`` unchanged, so that messages
    name what the user gave."""
    if not path or os.path.isabs(path) or os.path.exists(path):
        return path
    candidate = os.path.join(REPO_ROOT, path)
    return candidate if os.path.exists(candidate) else path
