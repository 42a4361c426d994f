"""The session a job gets when started as ``python jobs/train.py``, not through spark-submit."""
from __future__ import annotations

import subprocess
import sys

from tests.reliability.runner import LOCAL_ENV

PROGRAM = """
from pipeline.runtime.session import get_session
spark = get_session("python-worker-check", "local[1]")
print("workers ran", spark.sparkContext.parallelize([1, 2], 1).map(lambda x: x + 1).sum())
"""


def test_plain_python_start_runs_workers_on_this_interpreter(tmp_path):
    """pyspark starts workers with ``$PYSPARK_PYTHON`` or else the first ``python3`` on PATH;
    here that one is broken, so the job only works if the session chose this interpreter."""
    decoy = tmp_path / "python3"
    decoy.write_text("#!/bin/sh\necho 'decoy python3 started' >&2\nexit 3\n")
    decoy.chmod(0o755)
    env = {k: v for k, v in LOCAL_ENV.items() if not k.startswith("PYSPARK_")}
    env["PATH"] = f"{tmp_path}:{env['PATH']}"
    done = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "workers ran 5" in done.stdout
