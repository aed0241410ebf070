"""A worker and two PostgreSQL servers in separate network namespaces, with a per-stream limit.

    with remote_pair(rate="80mbit") as (source, target):
        ...  # this thread, its children and the threads it starts now live in the worker's
             # namespace; source.url(db) / target.url(db) reach the servers over shaped links

Layout: three namespaces, `bench-wrk-N` (the caller enters it: the engine, pg_dump,
pgcopydb all run there), `bench-src-N` and `bench-tgt-N` (one PostgreSQL server each,
listening only on its veth address). Each server namespace is joined to the worker's by a
veth pair; addresses come from 198.18.0.0/15, the range reserved for benchmarking
(RFC 2544), so nothing leaves the machine and nothing real is addressed.

The per-stream limit models a worker far from its databases, where each TCP connection is
limited by its own window and path rather than by a shared link: every connection on the
data direction (source -> worker, worker -> target) gets at most RATE, and N connections
N x RATE. The kernel here has neither `fq` (whose `maxrate` paces each flow) nor `netem`,
so the limit is built from what it has: an `htb` class of RATE per worker-side TCP port,
chosen by a `u32` hash of that port. The worker's namespace hands out only 256 even
ephemeral ports (connect() takes even ports first), so each concurrent connection to one
server has its own class. Latency is not modelled (no netem).

Everything created (namespaces, veths, qdiscs, servers) is removed on exit, also on failure
and at interpreter exit. Needs root (`ip netns`, `tc`) and Python >= 3.12 (`os.setns`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from local_cloud.postgres import RUN_AS_USER, LocalPostgres, bin_dir, start_postgres

BENCH_NET = "198.18"
# The worker's ephemeral ports: 512 ports, of which connect() uses the 256 even ones first.
PORT_LOW = 40000
PORT_BUCKETS = 256


@dataclass
class RemoteServer:
    """A throwaway server listening only on `host` inside namespace `netns`."""

    server: LocalPostgres
    netns: str
    host: str

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, dbname: str = "postgres") -> str:
        return self.server.url(dbname).replace("@127.0.0.1:", f"@{self.host}:", 1)


def _run(*args: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    done = subprocess.run([*prefix, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")


def _limit_per_port(device: str, netns: str, rate: str, port_field_mask: str) -> None:
    """On `device`'s egress: one htb class of `rate` per hash bucket of the worker's TCP port.

    `port_field_mask` selects the worker's port in the 32-bit word of TCP ports (source
    port in the high half, destination port in the low half) and drops its lowest bit, so
    the 256 even ports land in 256 buckets.
    """
    commands = [
        f"qdisc add dev {device} root handle 1: htb default 1 r2q 1000",
        f"class add dev {device} parent 1: classid 1:1 htb rate 10gbit",
        f"filter add dev {device} parent 1: prio 5 handle 2: protocol ip u32 divisor {PORT_BUCKETS}",
        f"filter add dev {device} parent 1: prio 5 protocol ip u32 ht 800:: match ip protocol 6 0xff "
        f"hashkey mask {port_field_mask} at 20 link 2:",
    ]
    for bucket in range(PORT_BUCKETS):
        classid = f"1:{0x100 + bucket:x}"
        commands += [
            f"class add dev {device} parent 1: classid {classid} htb rate {rate} ceil {rate}",
            f"filter add dev {device} parent 1: prio 5 protocol ip u32 ht 2:{bucket:x}: "
            f"match u32 0 0 flowid {classid}",
        ]
    with tempfile.NamedTemporaryFile("w", suffix=".tc") as batch:
        batch.write("\n".join(commands) + "\n")
        batch.flush()
        _run("tc", "-batch", batch.name, netns=netns)


def _move_server(server: LocalPostgres, netns: str, host: str) -> None:
    """Restart `server` inside `netns`, listening on `host` only (same port, same data)."""
    pg_ctl = str(bin_dir() / "pg_ctl")
    as_user = ["runuser", "-u", RUN_AS_USER, "--"] if server.run_as is not None else []
    data = str(server.data_dir)
    _run(*as_user, pg_ctl, "-D", data, "-m", "fast", "-w", "stop")
    with (server.data_dir / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all {BENCH_NET}.0.0/15 scram-sha-256\n")
        hba.write(f"host replication all {BENCH_NET}.0.0/15 scram-sha-256\n")
    log = str(server.root / "server.log")
    options = f"-c listen_addresses={host}"
    _run(*as_user, pg_ctl, "-D", data, "-l", log, "-w", "-t", "60", "-o", options, "start", netns=netns)


@contextlib.contextmanager
def remote_pair(
    *, rate: str, source_settings: dict[str, str] | None = None
) -> Iterator[tuple[RemoteServer, RemoteServer]]:
    """A source and a target server, each behind its own per-stream-limited link to the worker."""
    if os.geteuid() != 0:
        raise SystemExit("the network-namespace mode needs root (ip netns, tc)")
    tag = os.getpid() % 100_000
    subnet = f"{BENCH_NET}.{tag % 250}"
    worker = f"bench-wrk-{tag}"
    # role: (namespace, device in the worker's namespace, device in the server's, worker IP, server IP)
    links = {
        "source": (f"bench-src-{tag}", f"wsrc{tag}", f"src{tag}", f"{subnet}.1", f"{subnet}.2"),
        "target": (f"bench-tgt-{tag}", f"wtgt{tag}", f"tgt{tag}", f"{subnet}.5", f"{subnet}.6"),
    }
    created: list[str] = []
    servers: list[LocalPostgres] = []
    home = os.open("/proc/self/ns/net", os.O_RDONLY)

    def cleanup() -> None:
        for server in servers:
            server.stop()
        servers.clear()
        for netns in created:
            # Deleting a namespace deletes its veth ends, their peers and their qdiscs.
            subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
        created.clear()

    atexit.register(cleanup)
    try:
        _run("ip", "netns", "add", worker)
        created.append(worker)
        _run("ip", "link", "set", "lo", "up", netns=worker)
        _run(
            "sysctl",
            "-q",
            "-w",
            f"net.ipv4.ip_local_port_range={PORT_LOW} {PORT_LOW + 2 * PORT_BUCKETS - 1}",
            netns=worker,
        )
        # Hundreds of short tool connections per run: reuse ports in TIME_WAIT for new ones.
        _run("sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=1", netns=worker)
        pair: dict[str, RemoteServer] = {}
        for role, (netns, outer, inner, outer_ip, inner_ip) in links.items():
            _run("ip", "netns", "add", netns)
            created.append(netns)
            _run("ip", "link", "set", "lo", "up", netns=netns)
            _run(
                "ip",
                "link",
                "add",
                outer,
                "netns",
                worker,
                "type",
                "veth",
                "peer",
                "name",
                inner,
                "netns",
                netns,
            )
            _run("ip", "addr", "add", f"{outer_ip}/30", "dev", outer, netns=worker)
            _run("ip", "link", "set", outer, "up", netns=worker)
            _run("ip", "addr", "add", f"{inner_ip}/30", "dev", inner, netns=netns)
            _run("ip", "link", "set", inner, "up", netns=netns)
            # Source data leaves the source's namespace towards the worker's port (TCP destination
            # port); target data leaves the worker's namespace from the worker's port (source port).
            if role == "source":
                _limit_per_port(inner, netns, rate, "0x000001fe")
            else:
                _limit_per_port(outer, worker, rate, "0x01fe0000")
            server = start_postgres(
                password=f"bench-{role}-pw", settings=source_settings if role == "source" else None
            )
            servers.append(server)
            _move_server(server, netns, inner_ip)
            pair[role] = RemoteServer(server, netns, inner_ip)
        with open(f"/run/netns/{worker}") as handle:
            os.setns(handle.fileno(), os.CLONE_NEWNET)
        try:
            yield pair["source"], pair["target"]
        finally:
            os.setns(home, os.CLONE_NEWNET)
    finally:
        os.close(home)
        cleanup()
        atexit.unregister(cleanup)
