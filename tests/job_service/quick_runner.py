"""A quick stand-in for ``python -m job_runner.run_notebook`` in the reliability tests.

Hundreds of real papermill runs (a kernel each, seconds of CPU) do not fit a few minutes on two cores, so the
SIGKILL tests run this instead: it follows the runner's file protocol (runner.json with its pid, result.json),
runs in its own process group like the real runner, and appends "<job id> <attempt>" to $AISTACK_TEST_RUNS_LOG
so that the test can count how often each attempt ran. Everything around it (the LocalExecutor's process
groups, launch markers, adoption after a restart; the queue; the database) is the real thing; the real
runner is killed-and-restarted in test_real_papermill_job_survives_a_service_kill.
"""
import json
import os
import random
import sys
import time



# The same protocol as job_runner.run_notebook, in plain stdlib (started with `python -S`: no site
# packages to import, so that hundreds of runs stay cheap).
def process_start_time(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[19]


def write_json_atomic(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


adir = sys.argv[1]
with open(os.path.join(adir, "spec.json")) as f:
    spec = json.load(f)
write_json_atomic(os.path.join(adir, "runner.json"),
                  {"pid": os.getpid(), "pgid": os.getpgrp(), "start_time": process_start_time(os.getpid()), "kernels": []})
fd = os.open(os.environ["AISTACK_TEST_RUNS_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, f"{spec['job_id']} {spec['attempt']} {os.environ.get('AISTACK_GPU_MILLI')}\n".encode())
os.close(fd)
time.sleep(random.uniform(0.2, float(os.environ.get("AISTACK_TEST_RUN_MAX_S", "1.0"))))
write_json_atomic(os.path.join(adir, "result.json"), {"state": "succeeded"})
