/*
 * alto-enter: the small launcher the sandbox drivers put between Alto and what they start, for
 * the steps Node cannot take in a child before exec. Compiled on first use with the host's `cc`
 * (compute/sandbox/launcher.ts), static, so it also runs inside a sandbox whatever its image.
 *
 *   alto-enter [--fds N] [--session] [--sandbox] [--parent-death PID | --parent-death-fd N]
 *              [--default-signals] -- /absolute/program [arg...]
 *
 *   --fds N     keep descriptors 0..N-1 and close every other one (close_range), whatever the
 *               process inherited: Node's children get every descriptor Alto was started with
 *               that lacks close-on-exec (one inherited directory opens the whole data folder).
 *   --session   a session of its own, without a controlling terminal (setsid; TIOCNOTTY first
 *               when a standard descriptor is the terminal), so nothing started below can read
 *               or type into (TIOCSTI) the operator's terminal.
 *   --sandbox   what an app runs under: no new privileges (PR_SET_NO_NEW_PRIVS), no core dumps
 *               (hard limit 0, which root of a user namespace cannot raise), and the default
 *               seccomp filter below.
 *   --parent-death PID
 *               SIGKILL when the parent ends (PR_SET_PDEATHSIG), so what Alto starts ends with it,
 *               even when Alto is killed with SIGKILL: set last, after every change of
 *               credentials (which clears it), and kept across the execs that follow (none is
 *               set-uid or has file capabilities). Ends at once when the parent has ended
 *               already, which the parent's pid no longer being PID shows. The signal is sent
 *               when the parent *thread* ends: Node starts children from its main thread.
 *   --default-signals
 *               every signal back to its default action and none blocked, as a container's
 *               process starts: the sandbox supervisor is a shell, and a shell starts its
 *               background children with SIGINT and SIGQUIT ignored, which exec keeps (an app
 *               stopped with SIGINT would never hear it; a shell script cannot even trap it).
 *   --parent-death-fd N
 *               the same for the first process of a PID namespace, whose parent is outside it
 *               (getppid() answers 0): Alto having ended already shows in descriptor N, a pipe
 *               or socket whose other end only Alto holds, having hung up.
 *
 * The seccomp filter is the usual container-runtime profile, as a deny list: calls that reach
 * kernel surface a sandboxed app has no use for answer EPERM (mounts and the new mount API,
 * namespaces: unshare/clone with CLONE_NEW*, setns; bpf, io_uring, keyrings, ptrace and
 * process_vm_*, kernel modules, kexec, perf_event_open, userfaultfd, open_by_handle_at, swap,
 * reboot, quotas, syslog, acct...), TIOCSTI/TIOCLINUX ioctls are refused, clone3 answers ENOSYS
 * (its flags sit in memory a filter cannot read; libc then falls back to clone), and system
 * calls of another ABI (i386, x32) are refused as a whole, so no number can be reached twice.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "alto-enter knows the system call ABI of x86_64 and aarch64 only"
#endif

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

/* clone's low byte is the exit signal, so CLONE_NEWTIME (0x80) is unshare's and clone3's only. */
#define CLONE_NAMESPACES (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET)

/* The low 32 bits of argument i (little-endian on both ABIs above). */
#define ARG_LOW(i) (offsetof(struct seccomp_data, args) + (i) * sizeof(__u64))

static struct sock_filter filter[256];
static unsigned short filter_length;

static void emit(struct sock_filter instruction) {
  if (filter_length >= sizeof(filter) / sizeof(filter[0])) {
    fputs("alto-enter: seccomp filter too long\n", stderr);
    exit(127);
  }
  filter[filter_length++] = instruction;
}

/* Refuses system call `nr` with `error`; A holds the number before and after. */
static void refuse(long nr, int error) {
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (__u32)nr, 0, 1));
  emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (error & SECCOMP_RET_DATA)));
}

/* Refuses `nr` with EPERM when argument `arg` has any bit of `mask`; lets it through otherwise. */
static void refuse_when_flags(long nr, unsigned arg, __u32 mask) {
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (__u32)nr, 0, 4));
  emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LOW(arg)));
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, mask, 0, 1));
  emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
  emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
}

/* ioctl: refuses the requests that type into or take over a terminal; lets the rest through. */
static void refuse_terminal_ioctls(void) {
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 5));
  emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LOW(1)));
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 1, 0));
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 0, 1));
  emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
  emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
}

static void install_seccomp(void) {
  emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0));
  emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS));
  emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
#if defined(__x86_64__)
  /* x32 system calls are the same numbers with bit 30 set. */
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1));
  emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS));
#endif
#ifdef __NR_clone3
  refuse(__NR_clone3, ENOSYS);
#endif
  /* Mounts, old and new API, and ways into or out of namespaces. */
  refuse(__NR_mount, EPERM);
  refuse(__NR_umount2, EPERM);
  refuse(__NR_pivot_root, EPERM);
  refuse(__NR_setns, EPERM);
#ifdef __NR_open_tree
  refuse(__NR_open_tree, EPERM);
  refuse(__NR_move_mount, EPERM);
  refuse(__NR_fsopen, EPERM);
  refuse(__NR_fsconfig, EPERM);
  refuse(__NR_fsmount, EPERM);
  refuse(__NR_fspick, EPERM);
#endif
#ifdef __NR_mount_setattr
  refuse(__NR_mount_setattr, EPERM);
#endif
  refuse(__NR_open_by_handle_at, EPERM);
  /* Kernel surface: eBPF, io_uring, keyrings, tracing other processes, modules, kexec. */
  refuse(__NR_bpf, EPERM);
#ifdef __NR_io_uring_setup
  refuse(__NR_io_uring_setup, EPERM);
  refuse(__NR_io_uring_enter, EPERM);
  refuse(__NR_io_uring_register, EPERM);
#endif
  refuse(__NR_keyctl, EPERM);
  refuse(__NR_add_key, EPERM);
  refuse(__NR_request_key, EPERM);
  refuse(__NR_ptrace, EPERM);
  refuse(__NR_process_vm_readv, EPERM);
  refuse(__NR_process_vm_writev, EPERM);
#ifdef __NR_pidfd_getfd
  refuse(__NR_pidfd_getfd, EPERM);
#endif
  refuse(__NR_kcmp, EPERM);
  refuse(__NR_perf_event_open, EPERM);
  refuse(__NR_userfaultfd, EPERM);
  refuse(__NR_init_module, EPERM);
  refuse(__NR_finit_module, EPERM);
  refuse(__NR_delete_module, EPERM);
  refuse(__NR_kexec_load, EPERM);
#ifdef __NR_kexec_file_load
  refuse(__NR_kexec_file_load, EPERM);
#endif
  /* The machine's own state. */
  refuse(__NR_reboot, EPERM);
  refuse(__NR_swapon, EPERM);
  refuse(__NR_swapoff, EPERM);
  refuse(__NR_acct, EPERM);
  refuse(__NR_quotactl, EPERM);
#ifdef __NR_quotactl_fd
  refuse(__NR_quotactl_fd, EPERM);
#endif
  refuse(__NR_syslog, EPERM);
  refuse(__NR_vhangup, EPERM);
#ifdef __NR_lookup_dcookie
  refuse(__NR_lookup_dcookie, EPERM);
#endif
#if defined(__x86_64__)
  refuse(__NR_iopl, EPERM);
  refuse(__NR_ioperm, EPERM);
  refuse(__NR_uselib, EPERM);
  refuse(__NR_ustat, EPERM);
  refuse(__NR_sysfs, EPERM);
  refuse(__NR__sysctl, EPERM);
#endif
  /* Each of these returns (allow or refuse) once matched, since it reloads A with an argument. */
  refuse_when_flags(__NR_unshare, 0, CLONE_NAMESPACES | CLONE_NEWTIME);
  refuse_when_flags(__NR_clone, 0, CLONE_NAMESPACES);
  refuse_terminal_ioctls();
  emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));

  struct sock_fprog program = { .len = filter_length, .filter = filter };
  if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) != 0 &&
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    fprintf(stderr, "alto-enter: cannot install the seccomp filter: %s\n", strerror(errno));
    exit(127);
  }
}

/* Closes every descriptor from `first` on; close_range where the kernel has it, a walk otherwise. */
static void close_from(int first) {
#ifdef __NR_close_range
  if (syscall(__NR_close_range, (unsigned)first, ~0U, 0) == 0) return;
#endif
  DIR *dir = opendir("/proc/self/fd");
  if (dir) {
    int own = dirfd(dir);
    int found[4096];
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) && count < 4096) {
      int fd = atoi(entry->d_name);
      if (entry->d_name[0] != '.' && fd >= first && fd != own) found[count++] = fd;
    }
    closedir(dir);
    for (int i = 0; i < count; i++) close(found[i]);
    if (count < 4096) return;
  }
  struct rlimit limit;
  long last = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY ? (long)limit.rlim_cur : 1048576;
  for (long fd = first; fd < last; fd++) close((int)fd);
}

static void leave_terminal(void) {
  for (int fd = 0; fd <= 2; fd++)
    if (isatty(fd)) ioctl(fd, TIOCNOTTY);
  if (setsid() < 0) {
    fprintf(stderr, "alto-enter: cannot start a new session: %s\n", strerror(errno));
    exit(127);
  }
}

static void harden(void) {
  struct rlimit no_core = { 0, 0 };
  if (setrlimit(RLIMIT_CORE, &no_core) != 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    fprintf(stderr, "alto-enter: cannot drop privileges: %s\n", strerror(errno));
    exit(127);
  }
  install_seccomp();
}

/* SIGKILL when the parent ends; ends now if it has ended already (see --parent-death above). */
static void die_with_parent(long parent, int hangup_fd) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) {
    fprintf(stderr, "alto-enter: cannot set the parent-death signal: %s\n", strerror(errno));
    exit(127);
  }
  if (parent > 0 && getppid() != parent) _exit(127);
  if (hangup_fd >= 0) {
    struct pollfd watched = { .fd = hangup_fd, .events = 0 };
    if (poll(&watched, 1, 0) > 0 && (watched.revents & (POLLHUP | POLLERR | POLLNVAL))) _exit(127);
  }
}

/* Every catchable signal to its default action, and an empty signal mask. */
static void default_signals(void) {
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    /* The C library's own real-time signals answer EINVAL: nothing to reset there. */
    signal(sig, SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

static void usage(void) {
  fputs("usage: alto-enter [--fds N] [--session] [--sandbox] [--parent-death PID | --parent-death-fd N] [--default-signals] -- /absolute/program [arg...]\n", stderr);
  exit(127);
}

int main(int argc, char **argv) {
  int keep = -1, session = 0, sandbox = 0, parent_death = 0, hangup_fd = -1, signals = 0, i = 1;
  long parent = 0;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    if (strcmp(argv[i], "--fds") == 0 && i + 1 < argc) {
      char *end;
      long value = strtol(argv[++i], &end, 10);
      if (*end || value < 3 || value > 64) usage();
      keep = (int)value;
    } else if (strcmp(argv[i], "--session") == 0) session = 1;
    else if (strcmp(argv[i], "--sandbox") == 0) sandbox = 1;
    else if (strcmp(argv[i], "--default-signals") == 0) signals = 1;
    else if (strcmp(argv[i], "--parent-death") == 0 && i + 1 < argc) {
      char *end;
      parent = strtol(argv[++i], &end, 10);
      if (*end || parent < 1) usage();
      parent_death = 1;
    } else if (strcmp(argv[i], "--parent-death-fd") == 0 && i + 1 < argc) {
      char *end;
      long value = strtol(argv[++i], &end, 10);
      if (*end || value < 0 || value > 64) usage();
      hangup_fd = (int)value;
      parent_death = 1;
    }
    else usage();
  }
  if (i + 1 >= argc || argv[i + 1][0] != '/') usage();
  char **command = argv + i + 1;
  if (keep >= 0) close_from(keep);
  if (session) leave_terminal();
  if (sandbox) harden();
  if (signals) default_signals();
  if (parent_death) die_with_parent(parent, hangup_fd);
  execv(command[0], command);
  fprintf(stderr, "alto-enter: cannot run %s: %s\n", command[0], strerror(errno));
  return 127;
}
