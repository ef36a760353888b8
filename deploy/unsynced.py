"""A pass-through file system that keeps whatever was not fsynced, so that a power loss can drop it.

The backing folder plays the disk: after power_loss() it holds exactly what
was made durable, as a disk does after the power comes back. The model:

- Data: a write stays in this process's memory (4 KiB pages of the file,
  with the file's size) until fsync or fdatasync of that file writes it to
  the backing file. close() does not sync. Reads and stat see the unsynced
  data (read your writes). truncate is data too: the backing file keeps its
  old length until fsync. A file's own fsync is the only thing that makes its
  data durable: the kernel's background write-back (about 30 s on Linux)
  and ext4's data=ordered flushing of other files are not modelled, so all
  of it is lost; never a part of it (some pages and not others), which a
  real disk's write-back order may leave.
- Names: create, mkdir, rename, unlink and rmdir happen on the backing
  folder at once but are journalled; the next fsync of any file or
  directory commits every earlier one, as a journalling file system (ext4,
  XFS) commits its running transaction. A power loss undoes the uncommitted
  ones, newest first: a new file never fsynced disappears, a rename or an
  unlink is reversed (an unlinked or overwritten file waits in the trash, a
  folder beside the backing one, until commit; a removed folder comes back
  with its mode and owner). Redis's AOF rewrite (write a temporary file,
  fsync it, rename it) thus keeps its rename only once a later fsync, of
  the folder or of any file, has committed it.
- Attributes (chmod, chown, times) go to the backing folder at once and
  are never lost, where a real machine may lose one its journal has not
  committed. Hard and symbolic links, device nodes and extended
  attributes are not offered (ENOSYS).
- A clean unmount syncs everything, as a clean shutdown does.

Every operation holds one lock, and power_loss() takes it too: the loss
falls between two operations, never inside one. It drops the data of files
still open as well; the processes using the mount should be killed first
(the power is off for them too): what they write after it lands on the
state the loss left.
"""

import os
import shutil
import stat
import threading
from pathlib import Path

import mfusepy

PAGE = 4096


class Pending:
    """One file's changes since its last fsync: its size now, its pages written, and `floor`, the
    length below which the backing file still holds its bytes (a truncation since the last fsync
    lowers it; the bytes above it read as zeros)."""

    def __init__(self, size):
        self.size = self.floor = size
        self.pages = {}  # page index -> bytearray(PAGE)
        self.written = 0  # bytes written since the last fsync, counted as often as written


class UnsyncedFS(mfusepy.Operations):
    """The file system mounted over `backing`, with `trash` (a folder on the same file system) for removed files.

    A trash folder left by an earlier run is emptied: its files belonged to operations that run never undid,
    which are thus as good as committed, and its names would collide with this run's.
    """

    use_ns = True

    def __init__(self, backing, trash):
        self.backing, self.trash = Path(backing).resolve(), Path(trash).resolve()
        self._empty_trash()
        self._mutex = threading.Lock()
        self.pending = {}  # path (as FUSE gives it) -> Pending
        self.journal = []  # uncommitted namespace operations, oldest first
        self._trashed = 0

    def _real(self, path):
        return str(self.backing) + path

    def _file(self, path):
        """The Pending of `path`, made on its first change since its last fsync."""
        if path not in self.pending:
            self.pending[path] = Pending(os.lstat(self._real(path)).st_size)
        return self.pending[path]

    def _backing_bytes(self, path, offset, size):
        with open(self._real(path), "rb") as file:
            return os.pread(file.fileno(), size, offset)

    def _page(self, path, state, index):
        """Page `index` as the file reads now: from memory, or the backing file's bytes below `floor`."""
        if index in state.pages:
            return state.pages[index]
        start = index * PAGE
        page = bytearray(PAGE)
        if start < state.floor:
            data = self._backing_bytes(path, start, min(PAGE, state.floor - start))
            page[:len(data)] = data
        return page

    def _own(self, real):
        """Give a new file or folder to the caller, as the kernel would: this process runs as root."""
        if os.geteuid() == 0:
            uid, gid, _ = mfusepy.fuse_get_context()
            os.lchown(real, uid, gid)

    @staticmethod
    def _folder(real):
        """What undoing the removal of folder `real` restores: its mode and owner."""
        st = os.lstat(real)
        return st.st_mode, st.st_uid, st.st_gid

    @staticmethod
    def _restore_folder(real, folder):
        mode, uid, gid = folder
        os.mkdir(real)
        os.lchown(real, uid, gid)
        os.chmod(real, stat.S_IMODE(mode))  # after lchown, which clears set-user/group-ID bits

    def _trash_path(self):
        self._trashed += 1
        return str(self.trash / str(self._trashed))

    # Data

    def getattr(self, path, fh=None):
        with self._mutex:
            st = os.lstat(self._real(path))
            attrs = {key: getattr(st, key) for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size")}
            attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            if path in self.pending:
                attrs["st_size"] = self.pending[path].size
            return attrs

    def open(self, path, flags):
        with self._mutex:
            os.lstat(self._real(path))
            if flags & os.O_TRUNC:
                self._truncate(path, 0)
            return 0

    def read(self, path, size, offset, fh):
        with self._mutex:
            state = self.pending.get(path)
            if state is None:
                return self._backing_bytes(path, offset, size)
            end = min(offset + size, state.size)
            chunks = []
            while offset < end:
                index, within = divmod(offset, PAGE)
                take = min(PAGE - within, end - offset)
                chunks.append(bytes(self._page(path, state, index)[within:within + take]))
                offset += take
            return b"".join(chunks)

    def write(self, path, data, offset, fh):
        with self._mutex:
            state = self._file(path)
            done = 0
            while done < len(data):
                index, within = divmod(offset + done, PAGE)
                take = min(PAGE - within, len(data) - done)
                page = state.pages[index] = self._page(path, state, index)
                page[within:within + take] = data[done:done + take]
                done += take
            state.size = max(state.size, offset + len(data))
            state.written += len(data)
            return len(data)

    def truncate(self, path, length, fh=None):
        with self._mutex:
            self._truncate(path, length)

    def _truncate(self, path, length):
        state = self._file(path)
        state.size, state.floor = length, min(state.floor, length)
        for index in [index for index in state.pages if index * PAGE >= length]:
            del state.pages[index]
        index, within = divmod(length, PAGE)
        if index in state.pages:
            state.pages[index][within:] = bytes(PAGE - within)

    def fsync(self, path, datasync, fh):
        with self._mutex:
            self._sync(path)
            self._commit()

    def fsyncdir(self, path, datasync, fh):
        with self._mutex:
            self._commit()

    def _sync(self, path):
        """Write `path`'s pending changes to the backing file: from now on a power loss keeps them."""
        state = self.pending.pop(path, None)
        if state is None:
            return
        fd = os.open(self._real(path), os.O_WRONLY)
        try:
            os.ftruncate(fd, state.floor)
            for index, page in state.pages.items():
                if index * PAGE < state.size:
                    os.pwrite(fd, page[:min(PAGE, state.size - index * PAGE)], index * PAGE)
            os.ftruncate(fd, state.size)
        finally:
            os.close(fd)

    def _commit(self):
        """Make every journalled namespace operation durable, and empty the trash."""
        if self.journal:
            self.journal.clear()
            self._empty_trash()

    def _empty_trash(self):
        shutil.rmtree(self.trash, ignore_errors=True)
        self.trash.mkdir(mode=0o700)

    def destroy(self, path):
        """The clean unmount: sync everything."""
        self.sync_all()

    def sync_all(self):
        with self._mutex:
            for name in list(self.pending):
                self._sync(name)
            self._commit()

    # Names

    def readdir(self, path, fh):
        with self._mutex:
            return [".", "..", *os.listdir(self._real(path))]

    def statfs(self, path):
        with self._mutex:
            st = os.statvfs(self._real(path))
            return {key: getattr(st, key) for key in (
                "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_namemax")}

    def create(self, path, mode, fi=None):
        with self._mutex:
            real = self._real(path)
            os.close(os.open(real, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))
            self._own(real)
            self.journal.append(("create", path))
            return 0

    def mkdir(self, path, mode):
        with self._mutex:
            real = self._real(path)
            os.mkdir(real, mode)
            self._own(real)
            self.journal.append(("mkdir", path))

    def unlink(self, path):
        with self._mutex:
            kept = self._trash_path()
            os.rename(self._real(path), kept)
            self.journal.append(("unlink", path, kept))
            self.pending.pop(path, None)

    def rmdir(self, path):
        with self._mutex:
            real = self._real(path)
            folder = self._folder(real)
            os.rmdir(real)
            self.journal.append(("rmdir", path, folder))

    def rename(self, old, new):
        with self._mutex:
            source, target = self._real(old), self._real(new)
            replaced = None  # what the target was: None, a folder's (mode, uid, gid), or the trash path of its file
            if os.path.lexists(target):
                if os.path.isdir(target):
                    replaced = self._folder(target)
                else:
                    replaced = self._trash_path()
                    os.link(target, replaced)
            try:
                os.rename(source, target)
            except OSError:
                if isinstance(replaced, str):
                    os.unlink(replaced)
                raise
            self.journal.append(("rename", old, new, replaced))
            self.pending.pop(new, None)
            for name in [name for name in self.pending if name == old or name.startswith(old + "/")]:
                self.pending[new + name[len(old):]] = self.pending.pop(name)

    def chmod(self, path, mode):
        with self._mutex:
            os.chmod(self._real(path), mode)

    def chown(self, path, uid, gid):
        with self._mutex:
            os.lchown(self._real(path), uid, gid)

    def utimens(self, path, times=None):
        with self._mutex:
            os.utime(self._real(path), ns=times)

    # The fault

    def power_loss(self):
        """Drop every unsynced write and undo every uncommitted namespace operation; return what was lost."""
        with self._mutex:
            lost = {"files": len(self.pending),
                    "bytes_written": sum(state.written for state in self.pending.values()),
                    "namespace_operations": len(self.journal), "not_undone": []}
            self.pending.clear()
            for entry in reversed(self.journal):
                try:
                    self._undo(*entry)
                except OSError as error:
                    lost["not_undone"].append(f"{entry[0]} {entry[1]}: {error.strerror}")
            self.journal.clear()
            self._empty_trash()
            return lost

    def _undo(self, op, path, *args):
        real = self._real(path)
        if op == "create":
            os.unlink(real)
        elif op == "mkdir":
            os.rmdir(real)
        elif op == "unlink":
            os.rename(args[0], real)
        elif op == "rmdir":
            self._restore_folder(real, args[0])
        elif op == "rename":
            new, replaced = self._real(args[0]), args[1]
            os.rename(new, real)
            if isinstance(replaced, tuple):
                self._restore_folder(new, replaced)
            elif replaced:
                os.rename(replaced, new)

    def status(self):
        with self._mutex:
            return {"unsynced_files": len(self.pending),
                    "unsynced_bytes": sum(state.written for state in self.pending.values()),
                    "uncommitted_namespace_operations": len(self.journal)}

