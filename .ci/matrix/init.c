/*
 * PID 1 of the kernel-matrix VM (.ci/kernel-matrix.sh): a small static init, so that the
 * initramfs needs no shell or busybox.
 *
 * It mounts /proc, /sys, /dev (devtmpfs), /tmp and /dev/shm (tmpfs), brings up the loopback
 * interface, sets the environment listed in /matrix/env (KEY=VALUE lines), then runs each job
 * of /matrix/jobs in turn: one job a line, the program and its arguments separated by spaces
 * (no quoting; lines starting with '#' are comments). Each job runs in its own process group
 * and network namespace (loopback up), with the console as stdin/stdout/stderr and a time
 * limit (MATRIX_JOB_TIMEOUT seconds, default 900); on expiry the whole group is killed. For
 * each job it prints, on a line of its own, after "@@matrix kernel <uname -r>",
 *
 *     @@matrix start <argv0>                    (before it runs)
 *     @@matrix job <argv0> status <N> secs <S>  (exit code, or 128+signal, or 124 on
 *                                                timeout; S: its wall-clock time)
 *
 * and at the end "@@matrix done <failed jobs>". It then writes 0 (all passed) or 1 to the
 * isa-debug-exit port 0xf4 (qemu exits with (value << 1) | 1: 1 or 3) and powers off, in
 * case that device is missing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static void do_mount(const char *src, const char *dst, const char *type, const char *opts) {
    mkdir(dst, 0755);
    if (mount(src, dst, type, 0, opts) != 0)
        say("@@matrix init: mount %s on %s: %s\n", type, dst, strerror(errno));
}

static void loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        say("@@matrix init: socket: %s\n", strerror(errno));
        return;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0 ||
        (ifr.ifr_flags |= IFF_UP | IFF_RUNNING, ioctl(s, SIOCSIFFLAGS, &ifr) != 0))
        say("@@matrix init: bringing up lo: %s\n", strerror(errno));
    close(s);
}

static void power_off(int failed) {
    sync();
    /* qemu exits the moment the port is written: let the serial console send what it holds
     * first, or the last lines (the verdict) are lost. */
    fflush(stdout);
    tcdrain(STDOUT_FILENO);
    usleep(200 * 1000);
    /* isa-debug-exit: qemu exits at once with status (value << 1) | 1. */
    if (ioperm(0xf4, 4, 1) == 0)
        outb(failed ? 1 : 0, 0xf4);
    reboot(RB_POWER_OFF);
    for (;;)
        pause();
}

static volatile sig_atomic_t timed_out;
static void on_alarm(int sig) {
    (void)sig;
    timed_out = 1;
}

/* Runs argv to its end (or its time limit); returns its status as a shell would. */
static int run_job(char **argv, unsigned timeout) {
    pid_t pid = fork();
    if (pid < 0) {
        say("@@matrix init: fork: %s\n", strerror(errno));
        return 127;
    }
    if (pid == 0) {
        setpgid(0, 0);
        /* A network namespace of its own, as if each binary ran on a fresh machine: the
         * TIME_WAIT sockets of the binaries before it (net's thousands of connections) stay
         * out of the TCP table that some tests scan through /proc/self/net/tcp. */
        if (unshare(CLONE_NEWNET) != 0)
            say("@@matrix init: unshare(CLONE_NEWNET): %s\n", strerror(errno));
        loopback_up();
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(argv[0], argv);
        say("@@matrix init: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    timed_out = 0;
    alarm(timeout);
    int status = 0;
    for (;;) {
        /* Any child: as PID 1 we also reap the orphans the job leaves behind. */
        pid_t w = waitpid(-1, &status, 0);
        if (w == pid)
            break;
        if (w < 0 && errno == EINTR && timed_out) {
            say("@@matrix init: %s still running after %u s: killing it\n", argv[0], timeout);
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            alarm(0);
            kill(-pid, SIGKILL);
            return 124;
        }
        if (w < 0 && errno == ECHILD)
            return 127;
    }
    alarm(0);
    /* Leave nothing of the job behind for the next one. */
    kill(-pid, SIGKILL);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 127;
}

static void strip(char *line) {
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
        line[--n] = 0;
}

int main(void) {
    do_mount("proc", "/proc", "proc", NULL);
    do_mount("sysfs", "/sys", "sysfs", NULL);
    do_mount("devtmpfs", "/dev", "devtmpfs", NULL);
    do_mount("tmpfs", "/tmp", "tmpfs", "mode=1777");
    do_mount("tmpfs", "/dev/shm", "tmpfs", "mode=1777");
    do_mount("devpts", "/dev/pts", "devpts", NULL);

    /* The kernel gives PID 1 the console only if /dev/console existed before /dev was
     * mounted; make sure stdin/stdout/stderr are the console either way. */
    if (fcntl(1, F_GETFD) < 0) {
        int fd = open("/dev/console", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
            if (fd > 2)
                close(fd);
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    loopback_up();

    struct utsname u;
    if (uname(&u) == 0)
        say("@@matrix kernel %s\n", u.release);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: waitpid returns EINTR */
    sigaction(SIGALRM, &sa, NULL);

    char line[8192];
    FILE *env = fopen("/matrix/env", "r");
    if (env) {
        while (fgets(line, sizeof line, env)) {
            strip(line);
            if (line[0] && line[0] != '#')
                putenv(strdup(line));
        }
        fclose(env);
    }
    const char *t = getenv("MATRIX_JOB_TIMEOUT");
    unsigned timeout = t ? (unsigned)atoi(t) : 900;
    if (chdir("/tmp") != 0)
        say("@@matrix init: chdir /tmp: %s\n", strerror(errno));

    FILE *jobs = fopen("/matrix/jobs", "r");
    if (!jobs) {
        say("@@matrix init: /matrix/jobs: %s\n", strerror(errno));
        power_off(1);
    }
    int failed = 0;
    while (fgets(line, sizeof line, jobs)) {
        strip(line);
        if (!line[0] || line[0] == '#')
            continue;
        char *argv[256];
        int argc = 0;
        for (char *tok = strtok(line, " "); tok && argc < 255; tok = strtok(NULL, " "))
            argv[argc++] = tok;
        argv[argc] = NULL;
        say("@@matrix start %s\n", argv[0]);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int st = run_job(argv, timeout);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
        say("@@matrix job %s status %d secs %.1f\n", argv[0], st, secs);
        if (st != 0)
            failed++;
    }
    fclose(jobs);
    say("@@matrix done %d\n", failed);
    power_off(failed);
}
