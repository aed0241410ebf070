#!/usr/bin/env bash
# Runs the replication worker for one job: worker.sh JOB_ID
#
# Installed as /opt/seren-replicator/worker.sh on the worker image; the instance's
# user-data exports the non-secret settings (JOBS_TABLE_NAME, AWS_REGION, ...) and runs it.
# When the worker has ended, however it ended, the instance terminates itself
# (python -m worker.terminate). If that fails and SHUTDOWN_IF_NOT_TERMINATED=true, the
# instance is powered off instead (the launch template's shutdown behaviour then
# terminates it).
set -uo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
    echo "usage: $(basename "$0") JOB_ID" >&2
    exit 64
fi
job_id=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The interpreter: WORKER_PYTHON, else a virtualenv next to this script (the image's
# /opt/seren-replicator/venv, or the checkout's .venv), else python3 on PATH.
python=${WORKER_PYTHON:-}
if [[ -z "$python" ]]; then
    for candidate in "$here/venv/bin/python" "$here/../.venv/bin/python"; do
        if [[ -x "$candidate" ]]; then
            python=$candidate
            break
        fi
    done
fi
python=${python:-python3}

"$python" -m worker "$job_id" &
worker_pid=$!
# Spot interruption and shutdown send SIGTERM here: pass it on, the worker ends the job.
trap 'kill -TERM "$worker_pid" 2>/dev/null' TERM INT

status=0
while true; do
    status=0
    wait "$worker_pid" || status=$?
    # wait returns early when a trapped signal arrives; the worker is still finishing.
    kill -0 "$worker_pid" 2>/dev/null || break
done

if [[ $status -ne 0 ]]; then
    echo "worker exited with status $status" >&2
fi

terminated=0
"$python" -m worker.terminate || terminated=$?
if [[ $terminated -ne 0 && "${SHUTDOWN_IF_NOT_TERMINATED:-false}" == "true" ]]; then
    echo "the instance could not terminate itself; powering off" >&2
    shutdown -h now
fi
exit "$terminated"
