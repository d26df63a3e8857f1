#include "sandbox/mounts.hpp"

#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox/shared_root.hpp"

namespace nsbox {

namespace {

std::string basename_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool is_dir(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Flags a remount must repeat: inside a user namespace the kernel locks the
// nosuid/nodev/noexec/atime flags a mount came with, and a remount that
// would clear one fails with EPERM (see nsjail mnt.cc computeRemountFlags).
// Fails rather than guess: a remount without them would clear them.
int locked_flags(const char* path, unsigned long* out) {
  struct statvfs sv;
  if (statvfs(path, &sv) != 0) return errno;
  unsigned long f = 0;
  if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
  *out = f;
  return 0;
}

}  // namespace

// Beyond Docker's masks, "locks": it lists every lock on the host with its
// device and inode, a sibling sandbox's too, so that one could watch
// another's (and the host's) locking as it happens.
const char* const kProcMaskedFiles[8] = {"kcore",      "keys",        "latency_stats",
                                         "timer_list", "timer_stats", "sched_debug",
                                         "interrupts", "locks"};
const char* const kProcMaskedDirs[3] = {"acpi", "asound", "scsi"};
const char* const kProcReadOnly[6] = {"bus", "fs", "irq", "pressure", "sys", "sysrq-trigger"};

std::string MountOp::describe() const {
  switch (kind) {
    case Tmpfs:
      return "tmpfs on " + dst;
    case Overlay:
      return "overlay on " + dst;
    case SharedRoot:
      return "bind of the shared overlay " + src + " on " + dst;
    case Proc:
      return "proc on " + dst;
    case Bind:
      return "bind " + src + " on " + dst;
    case AttachTree:
      return "move_mount " + src + " on " + dst;
    case RemountRo:
      return "read-only remount of " + dst;
    case Remount:
      return "remount of " + dst;
    case Mkdir:
      return "mkdir " + dst;
    case Touch:
      return "create " + dst;
    case Symlink:
      return "symlink " + dst + " -> " + src;
  }
  return dst;
}

MountSources sources_from_spec(const SandboxSpec& spec) {
  return MountSources{spec.rootfs, spec.code_path, basename_of(spec.code_path),
                      is_dir(spec.code_path)};
}

MountPlan plan_mounts(const SandboxSpec& spec, const MountSources& src) {
  MountPlan p;
  p.stage = spec.stage_dir;
  p.new_root = spec.stage_dir + "/root";
  const std::string& r = p.new_root;
  // Inodes bounded too, one per page of its size (at least 4096): an empty
  // file takes no page but ~1 kB of kernel memory, which no limit charges
  // in rootless mode, and the kernel's default allows millions.
  const uint64_t inodes = std::max<uint64_t>(4096, spec.limits.tmpfs_bytes / 4096);
  const std::string tmpfs_size =
      "size=" + std::to_string(spec.limits.tmpfs_bytes) + ",nr_inodes=" + std::to_string(inodes);
  auto add = [&](MountOp::Kind k, std::string src, std::string dst, std::string data = {},
                 unsigned long flags = 0) {
    p.ops.push_back(MountOp{k, std::move(src), std::move(dst), std::move(data), flags});
  };
  // One tmpfs, the stage, is every byte a sandbox can write: the overlay's
  // upper and work dirs, /tmp, /dev/shm, and the directories that hold /dev
  // and a code file's mount point are its subdirectories, bind-mounted into
  // place. A superblock per mount would cost more than its own memory: the
  // kernel gives every memory cgroup a slot for each superblock's shrinker
  // (1 KiB per 64 of them, however many exist at once), so memory per
  // sandbox would grow with the number of sandboxes (docs/architecture.md).
  add(MountOp::Tmpfs, "", p.stage, tmpfs_size + ",mode=0755", MS_NOSUID | MS_NODEV);
  auto mkdir_mode = [&](const std::string& dst, mode_t mode) {
    add(MountOp::Mkdir, "", dst);
    p.ops.back().mode = mode;
  };
  if (src.shared_root_dev == 0) {
    add(MountOp::Mkdir, "", p.stage + "/upper");
    add(MountOp::Mkdir, "", p.stage + "/work");
  }
  add(MountOp::Mkdir, "", r);
  mkdir_mode(p.stage + "/tmp", 01777);
  mkdir_mode(p.stage + "/shm", 01777);
  // Bound read-only over the /proc directories Docker masks.
  mkdir_mode(p.stage + "/empty", 0555);

  // Minimal /dev: device nodes cannot be created in a user namespace, so the
  // host's harmless ones are bind-mounted onto empty files.
  const std::string dev = p.stage + "/dev";
  add(MountOp::Mkdir, "", dev);
  // Read-only: they are the host's inodes, and a writable mount would let a
  // function change their times or modes for the host and every sandbox.
  // (A device opened for writing ignores its mount's read-only flag, so
  // writing to /dev/null still works.)
  for (const char* d : {"null", "zero", "full", "random", "urandom"}) {
    add(MountOp::Touch, "", dev + "/" + d);
    add(MountOp::Bind, std::string("/dev/") + d, dev + "/" + d);
    add(MountOp::RemountRo, "", dev + "/" + d, {}, MS_NOSUID | MS_NOEXEC);
  }
  add(MountOp::Mkdir, "", dev + "/shm");
  add(MountOp::Symlink, "/proc/self/fd", dev + "/fd");
  add(MountOp::Symlink, "/proc/self/fd/0", dev + "/stdin");
  add(MountOp::Symlink, "/proc/self/fd/1", dev + "/stdout");
  add(MountOp::Symlink, "/proc/self/fd/2", dev + "/stderr");

  // Function code, read-only at a fixed path. A single file is bound onto an
  // empty file in a directory of its own, so its host siblings stay invisible.
  const std::string code = r + spec.code_mount;
  auto attach_code = [&](const std::string& dst) {
    if (src.code_tree_fd >= 0) {
      MountOp op{MountOp::AttachTree, src.code, dst, {}, 0};
      op.tree_fd = src.code_tree_fd;
      p.ops.push_back(op);
    } else {
      add(MountOp::Bind, src.code, dst);
    }
    // nosuid and nodev as every other mount; not noexec: a function's
    // directory may bundle programs it runs, as a Lambda package may.
    add(MountOp::RemountRo, "", dst, {}, MS_NOSUID | MS_NODEV);
  };
  // A blank pool sandbox has no code: it arrives later over the request channel.
  const bool blank = src.code.empty() && src.code_tree_fd < 0;
  const bool code_file = !blank && !src.code_is_dir;
  if (code_file) {
    add(MountOp::Mkdir, "", p.stage + "/code");
    add(MountOp::Touch, "", p.stage + "/code/" + src.code_name);
    attach_code(p.stage + "/code/" + src.code_name);
  }

  if (src.shared_root_dev != 0) {
    add(MountOp::SharedRoot, src.rootfs, r);
    p.ops.back().dev = src.shared_root_dev;
  } else {
    add(MountOp::Overlay, "", r,
        "lowerdir=" + src.rootfs + ",upperdir=" + p.stage + "/upper,workdir=" + p.stage + "/work",
        MS_NOSUID | MS_NODEV);
  }
  // Binds inherit the stage's nosuid,nodev; the remounts repeat them (so
  // they never rest on inheritance alone) and add the rest.
  add(MountOp::Bind, p.stage + "/tmp", r + "/tmp");
  add(MountOp::Bind, dev, r + "/dev");  // recursive: the device binds come along
  add(MountOp::Bind, p.stage + "/shm", r + "/dev/shm");
  add(MountOp::Remount, "", r + "/dev/shm", {}, MS_NOSUID | MS_NODEV | MS_NOEXEC);
  add(MountOp::RemountRo, "", r + "/dev", {}, MS_NOSUID | MS_NODEV | MS_NOEXEC);

  if (code_file) {
    add(MountOp::Bind, p.stage + "/code", code);
    add(MountOp::RemountRo, "", code, {}, MS_NOSUID | MS_NODEV);
  } else if (!blank) {
    attach_code(code);
  }

  // A fresh procfs for the new PID namespace, mounted while the old root
  // still shows a fully visible /proc (the kernel requires one in a userns).
  // No hidepid: every process of this PID namespace is the same tenant's,
  // except PID 1, which is non-dumpable (so its mem and environ stay shut)
  // and must stay listed so that its seccomp state can be checked from
  // inside; hidepid would hide exactly that and nothing of another tenant.
  // Not subset=pid: it would also drop /proc/meminfo, cpuinfo, stat,
  // loadavg, mounts and net, which ordinary code reads; the host-wide
  // entries that leak are masked below instead, as Docker and crun do.
  const std::string proc = r + "/proc";
  add(MountOp::Proc, "", proc, "", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  // Masks go on the new proc (mounts over the host's one would leave with
  // the old root). Read-only covers are a bind of the entry onto itself,
  // which gives a mount that can be remounted read-only on its own.
  auto optional = [&](MountOp::Kind k, std::string src, std::string dst, std::string data = {},
                      unsigned long flags = 0) {
    add(k, std::move(src), std::move(dst), std::move(data), flags);
    p.ops.back().optional = true;
  };
  // From the sandbox's own /dev/null, a read-only mount already: a bind
  // keeps its source mount's flags, so no remount is needed per mask.
  for (const char* f : kProcMaskedFiles) optional(MountOp::Bind, r + "/dev/null", proc + "/" + f);
  for (const char* d : kProcMaskedDirs) {
    optional(MountOp::Bind, p.stage + "/empty", proc + "/" + d);
    optional(MountOp::RemountRo, "", proc + "/" + d, {}, MS_NOSUID | MS_NODEV | MS_NOEXEC);
  }
  for (const char* e : kProcReadOnly) {
    optional(MountOp::Bind, proc + "/" + e, proc + "/" + e);
    optional(MountOp::RemountRo, "", proc + "/" + e);
  }
  return p;
}

int child_remount(const char* path, unsigned long flags) {
  unsigned long locked = 0;
  if (int err = locked_flags(path, &locked)) return err;
  flags |= MS_REMOUNT | MS_BIND | locked;
  return mount(nullptr, path, nullptr, flags, nullptr) == 0 ? 0 : errno;
}

int child_remount_ro(const char* path) {
  return child_remount(path, MS_RDONLY);
}

int child_run_mounts(const MountPlan& plan, const MountOp** failed) {
  for (const MountOp& op : plan.ops) {
    *failed = &op;
    const char* dst = op.dst.c_str();
    int rc = 0;
    switch (op.kind) {
      case MountOp::Tmpfs:
        rc = mount("tmpfs", dst, "tmpfs", op.flags, op.data.c_str());
        break;
      case MountOp::Overlay:
        rc = mount("overlay", dst, "overlay", op.flags, op.data.c_str());
        break;
      case MountOp::SharedRoot:
        // Not recursive: the overlay has nothing mounted below it. Its
        // read-only, nosuid and nodev flags come along locked, as the
        // template's namespace was copied into this less privileged one.
        rc = mount(op.src.c_str(), dst, nullptr, MS_BIND, nullptr);
        if (rc == 0) {
          // The template's overlay, not whatever is at the path now: a
          // rebuild may have put another tree there since its check.
          if (!shared_root_in_place(op.dst, op.dev)) {
            errno = ESTALE;
            rc = -1;
          }
        }
        break;
      case MountOp::Proc:
        rc = mount("proc", dst, "proc", op.flags, op.data.c_str());
        break;
      case MountOp::Bind:
        rc = mount(op.src.c_str(), dst, nullptr, MS_BIND | MS_REC, nullptr);
        break;
      case MountOp::AttachTree:
        rc = static_cast<int>(
            syscall(SYS_move_mount, op.tree_fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH));
        break;
      case MountOp::RemountRo:
      case MountOp::Remount:
        if (int err =
                child_remount(dst, op.flags | (op.kind == MountOp::RemountRo ? MS_RDONLY : 0))) {
          if (op.optional && err == ENOENT) continue;
          return err;
        }
        break;
      case MountOp::Mkdir:
        // chmod too: the caller's umask would strip bits (/tmp's 1777, or
        // /dev's 0755 under a umask of 077).
        rc = mkdir(dst, op.mode);
        if (rc == 0) rc = chmod(dst, op.mode);
        break;
      case MountOp::Touch: {
        int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        rc = fd < 0 ? -1 : close(fd);
        break;
      }
      case MountOp::Symlink:
        rc = symlink(op.src.c_str(), dst);
        break;
    }
    if (rc != 0 && op.optional && errno == ENOENT) continue;
    if (rc != 0) return errno;
  }
  *failed = nullptr;
  return 0;
}

int child_pivot_root(const char* new_root, const char** step) {
  *step = "chdir";
  if (chdir(new_root) != 0) return errno;
  // pivot_root(".", ".") stacks the old root on the new one; detaching "."
  // then drops it without needing a directory for it in the new tree.
  *step = "pivot_root";
  if (syscall(SYS_pivot_root, ".", ".") != 0) return errno;
  *step = "umount2(old root)";
  if (umount2(".", MNT_DETACH) != 0) return errno;
  *step = "chdir(/)";
  if (chdir("/") != 0) return errno;
  return 0;
}

}  // namespace nsbox
