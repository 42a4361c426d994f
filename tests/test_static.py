"""Static checks that catch what a run may not reach: a name shadowed by a later definition,
an import that no longer exists or is unused, an undefined name."""
from __future__ import annotations

import subprocess
import sys

from pipeline import config


def test_pyflakes_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "pyflakes", "pipeline", "jobs", "bench", "tests"],
                          cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and not done.stdout, done.stdout + done.stderr
