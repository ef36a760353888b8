"""The power-loss file system (deploy/powerloss.py, deploy/unsynced.py): what a power loss keeps and drops.

First plain files on the mount, then a real redis-server with its AOF on it:
`appendfsync always` keeps every acknowledged write, `everysec` loses the
last moments' (which a SIGKILL alone would not), no persistence loses all.
Mounting needs root and /dev/fuse.
"""

import os
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path

import pytest
import redis

from deploy import powerloss
from deploy.cluster import free_port, new_password, stop, wait_for
from deploy.kinds.redis import start_redis

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                                reason="FUSE mounts need root and /dev/fuse")


class Disk:
    def __init__(self, folder):
        self.folder, self.record = folder, None
        self.mount, self.backing = Path(folder) / "data", Path(folder) / "disk"

    def start(self):
        self.record = powerloss.mount(self.backing, self.mount, control=f"{self.folder}/control",
                                      log_path=f"{self.folder}/powerloss.log")

    def stop(self):
        record, self.record = self.record, None
        powerloss.unmount(record)


@pytest.fixture
def disk():
    folder = tempfile.mkdtemp(prefix="lab-test-powerloss-")  # short: a UNIX socket's path has at most 107 bytes
    disk = Disk(folder)
    try:
        disk.start()
        yield disk
    finally:
        if disk.record:
            disk.stop()
        shutil.rmtree(folder, ignore_errors=True)
    assert not powerloss.mounted(disk.mount)


def write(path, data, *, sync, mode="wb"):
    with open(path, mode) as file:
        file.write(data)
        file.flush()
        if sync:
            os.fsync(file.fileno())


def sync_folder(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_a_write_not_fsynced_is_dropped_and_one_fsynced_is_kept(disk):
    write(disk.mount / "kept", b"synced", sync=True)
    write(disk.mount / "kept", b" appended", sync=False, mode="ab")
    write(disk.mount / "new", b"never synced", sync=False)
    assert (disk.mount / "kept").read_bytes() == b"synced appended"  # read your writes
    assert (disk.backing / "kept").read_bytes() == b"synced"  # the disk has only the fsynced part
    assert powerloss.status(disk.record) == {"unsynced_files": 2, "unsynced_bytes": 21,
                                             "uncommitted_namespace_operations": 1}

    lost = powerloss.power_loss(disk.record)

    assert lost == {"files": 2, "bytes_written": 21, "namespace_operations": 1, "not_undone": []}
    assert (disk.mount / "kept").read_bytes() == b"synced"
    assert not (disk.mount / "new").exists()  # created after the last fsync: its name is lost too
    assert sorted(os.listdir(disk.mount)) == ["kept"]


def test_truncate_is_lost_unless_fsynced(disk):
    path = disk.mount / "file"
    write(path, b"x" * 10_000, sync=True)
    write(path, b"short", sync=False)  # open(O_TRUNC): a truncation too
    assert path.read_bytes() == b"short"
    powerloss.power_loss(disk.record)
    assert path.read_bytes() == b"x" * 10_000

    os.truncate(path, 100)
    with open(path, "r+b") as file:
        file.seek(5_000)
        file.write(b"y" * 10)
    expected = b"x" * 100 + bytes(4_900) + b"y" * 10  # the bytes cut off read as zeros, not as the old x
    assert path.read_bytes() == expected
    assert (disk.backing / "file").stat().st_size == 10_000

    powerloss.power_loss(disk.record)
    assert path.read_bytes() == b"x" * 10_000

    with open(path, "r+b") as file:
        file.truncate(100)
        file.seek(5_000)
        file.write(b"y" * 10)
        file.flush()
        os.fsync(file.fileno())
    powerloss.power_loss(disk.record)
    assert path.read_bytes() == expected


def test_a_rename_is_lost_until_a_later_fsync_commits_it(disk):
    """Redis's AOF rewrite: a temporary file written and fsynced, then renamed over the old one."""
    write(disk.mount / "data", b"old", sync=True)
    write(disk.mount / "data.tmp", b"new", sync=True)
    os.rename(disk.mount / "data.tmp", disk.mount / "data")
    assert (disk.mount / "data").read_bytes() == b"new"

    assert powerloss.power_loss(disk.record)["namespace_operations"] == 1
    assert (disk.mount / "data").read_bytes() == b"old"
    assert (disk.mount / "data.tmp").read_bytes() == b"new"

    os.rename(disk.mount / "data.tmp", disk.mount / "data")
    sync_folder(disk.mount)
    powerloss.power_loss(disk.record)
    assert sorted(os.listdir(disk.mount)) == ["data"]
    assert (disk.mount / "data").read_bytes() == b"new"


def test_unlink_and_mkdir_are_undone_and_a_clean_unmount_keeps_everything(disk):
    write(disk.mount / "file", b"synced", sync=True)
    os.unlink(disk.mount / "file")
    os.mkdir(disk.mount / "folder")
    powerloss.power_loss(disk.record)
    assert sorted(os.listdir(disk.mount)) == ["file"]
    assert (disk.mount / "file").read_bytes() == b"synced"

    write(disk.mount / "file", b" and more", sync=False, mode="ab")
    disk.stop()  # a clean shutdown syncs
    assert not powerloss.mounted(disk.mount)
    assert (disk.backing / "file").read_bytes() == b"synced and more"


def test_unmount_cleans_up_after_the_file_system_process_died(disk):
    stop(disk.record, sig=signal.SIGKILL)
    assert powerloss.mounted(disk.mount)  # a dead FUSE mount stays, every access failing
    with pytest.raises(OSError):
        os.listdir(disk.mount)
    disk.stop()
    assert not powerloss.mounted(disk.mount)


def test_new_files_and_folders_have_the_mode_asked_for(disk):
    """The kernel applies the caller's umask; the file system applies none of its own."""
    old = os.umask(0o022)
    try:
        os.close(os.open(disk.mount / "file", os.O_CREAT | os.O_WRONLY, 0o666))
        os.mkdir(disk.mount / "folder", 0o777)
    finally:
        os.umask(old)
    assert stat.S_IMODE((disk.mount / "file").stat().st_mode) == 0o644
    assert stat.S_IMODE((disk.mount / "folder").stat().st_mode) == 0o755


def test_a_trash_left_by_an_earlier_run_is_emptied(disk):
    write(disk.mount / "data", b"old", sync=True)
    write(disk.mount / "data.tmp", b"new", sync=True)
    disk.stop()
    (powerloss.trash_of(disk.backing) / "1").write_bytes(b"left by a run that died")
    disk.start()
    os.rename(disk.mount / "data.tmp", disk.mount / "data")  # the old file goes to the trash
    assert (disk.mount / "data").read_bytes() == b"new"
    powerloss.power_loss(disk.record)
    assert (disk.mount / "data").read_bytes() == b"old"


def test_a_removed_folder_comes_back_with_its_owner_and_mode(disk):
    for name in ("removed", "replaced"):
        os.mkdir(disk.mount / name)
        os.chown(disk.mount / name, 65534, 65534)
        os.chmod(disk.mount / name, 0o750)
    os.mkdir(disk.mount / "new")
    sync_folder(disk.mount)
    os.rmdir(disk.mount / "removed")
    os.rename(disk.mount / "new", disk.mount / "replaced")

    assert powerloss.power_loss(disk.record)["not_undone"] == []
    for name in ("removed", "replaced"):
        st = (disk.mount / name).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o750), name


def test_a_mount_point_with_a_space_and_a_non_ascii_letter_is_seen():
    folder = tempfile.mkdtemp(prefix="lab-test-powerloss-")
    mountpoint = f"{folder}/dåta 1"
    record = None
    try:
        record = powerloss.mount(f"{folder}/disk", mountpoint, control=f"{folder}/control",
                                 log_path=f"{folder}/powerloss.log")
        assert powerloss.mounted(mountpoint)
        assert not powerloss.mounted(f"{folder}/data 1")
    finally:
        if record:
            powerloss.unmount(record)
        shutil.rmtree(folder, ignore_errors=True)
    assert not powerloss.mounted(mountpoint)


# A real Redis with its data folder on the mount.

class Redis:
    """redis-server with `dir` on the mount; kill() is a crash, start() again loads what the disk has."""

    def __init__(self, disk, options):
        self.disk, self.options = disk, options
        self.port, self.password = free_port(), new_password()
        self.record = None

    def start(self):
        self.record = start_redis(port=self.port, state_dir=self.disk.folder, password=self.password,
                                  folder=str(self.disk.mount), args=self.options)
        client = redis.Redis(port=self.port, password=self.password, socket_timeout=30)
        wait_for(lambda: _loaded(client), timeout=30, what="Redis to load its data")
        return client

    def kill(self):
        stop(self.record, sig=signal.SIGKILL)


def _loaded(client):
    try:
        info = client.info("persistence")
    except (redis.BusyLoadingError, redis.ConnectionError):
        return False  # still loading, or not listening yet
    return not (info["loading"] or info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"])


@pytest.fixture
def redis_on(disk):
    servers = []

    def start(*options):
        server = Redis(disk, list(options))
        servers.append(server)
        return server, server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.kill()  # before the unmount: a clean unmount waits for no open file


def write_for(client, seconds):
    """SET new keys in pipelines of 100 for `seconds`; return each acknowledged key with when it was acknowledged."""
    acknowledged, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        keys = [f"key:{len(acknowledged) + i}" for i in range(100)]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, "v")
        pipe.execute()
        now = time.monotonic()
        acknowledged += [(key, now) for key in keys]
    return acknowledged


def lost_after(client, acknowledged):
    """The acknowledged keys the server no longer has, in the order they were written."""
    keys = [key for key, _ in acknowledged]
    present = []
    for start in range(0, len(keys), 1000):
        present += client.mget(keys[start:start + 1000])
    return [key for key, value in zip(keys, present) if value is None]


def crash_and_restart(server, disk, *, power_loss=True):
    server.kill()
    if power_loss:
        powerloss.power_loss(disk.record)
    return server.start()


def test_appendfsync_always_keeps_every_acknowledged_write(redis_on, disk):
    server, client = redis_on("--appendonly", "yes", "--appendfsync", "always")
    acknowledged = write_for(client, 1.5)
    client = crash_and_restart(server, disk)
    assert lost_after(client, acknowledged) == []


def test_appendfsync_everysec_loses_the_last_moments_writes(redis_on, disk):
    server, client = redis_on("--appendonly", "yes", "--appendfsync", "everysec")
    acknowledged = write_for(client, 3)
    killed_at = time.monotonic()
    client = crash_and_restart(server, disk)
    lost = lost_after(client, acknowledged)
    keys = [key for key, _ in acknowledged]
    assert lost, f"none of {len(keys)} writes lost: every one was fsynced before the power loss"
    assert lost == keys[len(keys) - len(lost):]  # the log's tail: every write after the first lost one
    # everysec fsyncs about once a second (Redis waits up to 2 s for a slow fsync); the margin is the busy machine.
    oldest_lost = dict(acknowledged)[lost[0]]
    assert killed_at - oldest_lost < 2.5


def test_a_sigkill_alone_keeps_everysec_writes(redis_on, disk):
    """Why the layer: a crash of the process keeps what the kernel (here the layer) holds."""
    server, client = redis_on("--appendonly", "yes", "--appendfsync", "everysec")
    acknowledged = write_for(client, 1)
    client = crash_and_restart(server, disk, power_loss=False)
    assert lost_after(client, acknowledged) == []


def test_without_persistence_a_power_loss_loses_everything(redis_on, disk):
    server, client = redis_on("--appendonly", "no")  # and `save ""`, as every deployed Redis
    acknowledged = write_for(client, 0.5)
    client = crash_and_restart(server, disk)
    assert len(lost_after(client, acknowledged)) == len(acknowledged)
    assert client.dbsize() == 0
