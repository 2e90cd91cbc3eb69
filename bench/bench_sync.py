"""Incremental upload: swiftrun.sync.upload vs rsync over ssh, one changed file in 2000.

Run: python bench/bench_sync.py [--files 2000] [--repeat 7]
Starts its own loopback sshd (stopped by PID), prints medians; no assertions.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paramiko  # noqa: E402
from fabric import Config, Connection  # noqa: E402

from swiftrun import sync  # noqa: E402
from tests.support.sshd import LoopbackSshd, keygen  # noqa: E402


def connect(sshd: LoopbackSshd, key: Path, known: Path) -> Connection:
    cfg = Config(overrides={"run": {"in_stream": False}}, ssh_config=paramiko.SSHConfig())
    conn = Connection("127.0.0.1", user=sshd.user, port=sshd.port, config=cfg,
                      connect_kwargs={"key_filename": str(key), "look_for_keys": False, "allow_agent": False})
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client.load_host_keys(str(known))
    conn.open()
    return conn


def make_tree(root: Path, n: int) -> None:
    for i in range(n):
        p = root / f"d{i % 20:02d}" / f"f{i:05d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"file {i}\n" * 8)


def touch_one(root: Path, k: int) -> None:
    p = root / "d07" / "f00007.txt"
    p.write_text(f"changed {k}\n" * 8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    sshd = None
    try:
        key = keygen(base / "id_ed25519")
        auth = base / "authorized_keys"
        auth.write_text(Path(str(key) + ".pub").read_text())
        home = base / "home"
        home.mkdir()
        sshd = LoopbackSshd(base / "sshd", auth, env={"HOME": str(home)}).start()
        known = base / "known_hosts"
        known.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {sshd.host_key_pub}\n")
        local, remote_sw, remote_rs = base / "local", base / "remote-swiftrun", base / "remote-rsync"
        make_tree(local, args.files)
        state = base / "state.json"
        ssh_cmd = (f"ssh -i {key} -p {sshd.port} -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes "
                   f"-o IdentitiesOnly=yes -o BatchMode=yes -F /dev/null")

        def rsync() -> None:
            subprocess.run(["rsync", "-a", "-e", ssh_cmd, f"{local}/", f"{sshd.user}@127.0.0.1:{remote_rs}/"],
                           check=True)

        conn = connect(sshd, key, known)
        t = time.perf_counter()
        full = sync.upload(conn, local, str(remote_sw), state_file=state)
        t_full_sw = time.perf_counter() - t
        t = time.perf_counter()
        rsync()
        t_full_rs = time.perf_counter() - t

        warm, cold, rs, sent = [], [], [], []
        for k in range(args.repeat):
            touch_one(local, k)
            t = time.perf_counter()
            rep = sync.upload(conn, local, str(remote_sw), state_file=state)
            warm.append(time.perf_counter() - t)
            sent.append(rep.files_sent)

            touch_one(local, 1000 + k)
            t = time.perf_counter()
            c2 = connect(sshd, key, known)
            sync.upload(c2, local, str(remote_sw), state_file=state)
            cold.append(time.perf_counter() - t)
            c2.close()

            rsync()                              # bring rsync's side to the same state first
            touch_one(local, 2000 + k)
            t = time.perf_counter()
            rsync()
            rs.append(time.perf_counter() - t)
        conn.close()

        m_warm, m_cold, m_rs = (statistics.median(x) for x in (warm, cold, rs))
        print(f"tree: {args.files} files, {full.total_bytes} bytes; repeats: {args.repeat}")
        print(f"full upload:        swiftrun {t_full_sw:.3f} s   rsync {t_full_rs:.3f} s")
        print(f"one-file change (median): files sent per swiftrun upload: {sorted(set(sent))}")
        print(f"  swiftrun warm (connection open):       {m_warm:.4f} s")
        print(f"  swiftrun incl. connection open:        {m_cold:.4f} s")
        print(f"  rsync -a over ssh (new ssh process):    {m_rs:.4f} s")
        print(f"  ratio swiftrun/rsync: warm {m_warm / m_rs:.2f}, incl. connect {m_cold / m_rs:.2f}")
        print(f"  (swiftrun local scan alone: {scan_seconds(local):.4f} s)")
    finally:
        if sshd is not None:
            sshd.stop()
        shutil.rmtree(base, ignore_errors=True)


def scan_seconds(local: Path) -> float:
    from swiftrun.sync.ignore import IgnoreRules
    t = time.perf_counter()
    sync.scan(local, IgnoreRules.from_dir(local))
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
