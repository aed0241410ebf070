#!/usr/bin/env bash
# Prepares a replication worker image. Run as root on a fresh Amazon Linux 2023 instance
# (or inside a Packer build), then create the AMI from that instance.
#
#   prepare-worker-image.sh --source DIR_OR_WHEEL [--log-group NAME] [--replicator PATH]
#
#   --source      this project: a checkout directory or a built wheel (the worker package)
#   --log-group   CloudWatch log group the agent ships boot logs to; must equal Terraform's
#                 worker_log_group output (default: /seren-replication/workers)
#   --replicator  optional seren-replicator binary, the production engine (ENGINE=auto)
#   --constraints optional pip constraints file (the versions the tests ran with)
#
# What the image gets: PostgreSQL client tools, Python 3.12, the worker in a virtualenv at
# /opt/seren-replicator/venv, /opt/seren-replicator/worker.sh (what user-data runs), the
# CloudWatch agent with its configuration, and /proc mounted with hidepid=2 so that no
# process can read another user's command line or environment (where credentials live).
set -euo pipefail

install_dir=/opt/seren-replicator
local_log_dir=/var/log/seren-replicator
agent_config=/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json
python_bin=python3.12
postgresql_package=postgresql16

source_path=""
log_group=/seren-replication/workers
replicator=""
constraints=""

usage() {
    sed -n '5,11p' "$0" >&2
    exit 64
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --source) source_path=${2:?}; shift 2 ;;
        --log-group) log_group=${2:?}; shift 2 ;;
        --replicator) replicator=${2:?}; shift 2 ;;
        --constraints) constraints=${2:?}; shift 2 ;;
        *) usage ;;
    esac
done
[[ -n "$source_path" && -e "$source_path" ]] || usage
[[ $EUID -eq 0 ]] || { echo "run as root" >&2; exit 77; }

log() { printf '==> %s\n' "$*"; }

install_packages() {
    log "installing PostgreSQL client tools, Python and the CloudWatch agent"
    dnf install -y -q "$postgresql_package" "$python_bin" "${python_bin}-pip" amazon-cloudwatch-agent
    for tool in psql pg_dump pg_restore; do
        command -v "$tool" >/dev/null || { echo "missing $tool after install" >&2; exit 1; }
    done
}

install_worker() {
    log "installing the worker into $install_dir/venv"
    install -d -m 0755 -o root -g root "$install_dir"
    "$python_bin" -m venv "$install_dir/venv"
    "$install_dir/venv/bin/python" -m pip install --quiet --upgrade pip
    local pip_args=(--quiet --no-cache-dir)
    if [[ -n "$constraints" ]]; then
        pip_args+=(--constraint "$constraints")
    fi
    "$install_dir/venv/bin/python" -m pip install "${pip_args[@]}" "$source_path"
    # Fail the bake, not the first job, if the package is incomplete.
    "$install_dir/venv/bin/python" -c 'import worker.worker, worker.settings'

    local script
    if [[ -d "$source_path" ]]; then
        script="$source_path/worker/worker.sh"
    else
        script="$(dirname "$(readlink -f "$0")")/../worker.sh"
    fi
    install -m 0755 -o root -g root "$script" "$install_dir/worker.sh"

    if [[ -n "$replicator" ]]; then
        install -m 0755 -o root -g root "$replicator" "$install_dir/seren-replicator"
    fi
    install -d -m 0700 -o root -g root "$local_log_dir"
}

configure_cloudwatch_agent() {
    log "configuring the CloudWatch agent (boot logs to $log_group)"
    install -d -m 0755 "$(dirname "$agent_config")"
    # Logs only: job output already reaches the log group through the worker (redacted);
    # the agent adds the boot and user-data output, which explains workers that never
    # reached the table. Stream names start with the instance id, never a job id.
    cat >"$agent_config" <<JSON
{
  "agent": {"run_as_user": "root", "logfile": "/opt/aws/amazon-cloudwatch-agent/logs/amazon-cloudwatch-agent.log"},
  "logs": {
    "force_flush_interval": 15,
    "logs_collected": {
      "files": {
        "collect_list": [
          {
            "file_path": "/var/log/cloud-init-output.log",
            "log_group_name": "$log_group",
            "log_stream_name": "{instance_id}/cloud-init-output",
            "retention_in_days": -1
          }
        ]
      }
    }
  }
}
JSON
    /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -c "file:$agent_config"
    systemctl enable amazon-cloudwatch-agent
}

harden_proc() {
    log "mounting /proc with hidepid=2"
    if ! grep -qE '^proc[[:space:]]+/proc[[:space:]]' /etc/fstab; then
        printf 'proc /proc proc defaults,hidepid=2 0 0\n' >>/etc/fstab
    fi
    mount -o remount,hidepid=2 /proc
}

clean_for_imaging() {
    log "cleaning up for the image"
    dnf clean all -q
    rm -rf /root/.cache /tmp/* /var/tmp/*
    # The next boot is a new instance: cloud-init runs its user-data again.
    cloud-init clean --logs
}

install_packages
install_worker
configure_cloudwatch_agent
harden_proc
clean_for_imaging
log "done: create the AMI from this instance now"
