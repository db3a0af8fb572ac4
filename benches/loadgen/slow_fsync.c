/*
 * An LD_PRELOAD shim for the durable figures: fsync and fdatasync run the
 * real flush, then sleep until SLOW_FSYNC_US microseconds (default 2700)
 * have passed since the call began. Writes, reads and everything else are
 * untouched. It stands in for a disk whose flush takes that long, so the
 * figures that issue 9 states against fsync latency can be measured on a
 * disk that flushes in a tenth of a millisecond. The loadgen's own
 * fdatasync probe goes through it too, so every ratio is against the
 * latency the shim imposes, measured in the same run.
 *
 *   gcc -O2 -shared -fPIC -o /tmp/slow_fsync.so benches/loadgen/slow_fsync.c -ldl
 *   cargo bench --bench loadgen --no-run
 *   LD_PRELOAD=/tmp/slow_fsync.so target/release/deps/loadgen-<hash> --bench --store sqlite
 *
 * Not built by cargo; nothing in the library or its tests uses it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static long flush_ns(void) {
    const char *configured = getenv("SLOW_FSYNC_US");
    return (configured ? atol(configured) : 2700) * 1000L;
}

/* Sleeps out whatever of the flush time is left since `start`. */
static void pad(const struct timespec *start) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long elapsed = (now.tv_sec - start->tv_sec) * 1000000000L + (now.tv_nsec - start->tv_nsec);
    long rest = flush_ns() - elapsed;
    if (rest > 0) {
        struct timespec left = {rest / 1000000000L, rest % 1000000000L};
        while (nanosleep(&left, &left) != 0) {
        }
    }
}

/* Runs the real flush `name` on `fd`, then sleeps out the rest. `real`
   caches libc's function; threads racing to fill it store the same value. */
static int padded(int (**real)(int), const char *name, int fd) {
    int (*flush)(int) = __atomic_load_n(real, __ATOMIC_ACQUIRE);
    if (!flush) {
        flush = (int (*)(int))dlsym(RTLD_NEXT, name);
        __atomic_store_n(real, flush, __ATOMIC_RELEASE);
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int result = flush(fd);
    pad(&start);
    return result;
}

int fdatasync(int fd) {
    static int (*real)(int);
    return padded(&real, "fdatasync", fd);
}

int fsync(int fd) {
    static int (*real)(int);
    return padded(&real, "fsync", fd);
}
