/* Shared by the real-Xen benchmark programs: timing loop and JSON output.
 * Built at run time by tools/bench-realxen against the suite's own headers
 * and libraries (never committed as binaries). */
#ifndef XENPRIVCMD_BENCH_COMMON_H
#define XENPRIVCMD_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Runs op() iters times per repeat and prints one JSON line:
 * {"impl": ..., "op": ..., "iters": N, "per_call_ns": [per repeat ...]} */
#define BENCH(impl, name, iters, repeats, stmt)                                   \
    do {                                                                          \
        printf("{\"impl\": \"%s\", \"op\": \"%s\", \"iters\": %d, \"per_call_ns\": [", \
               impl, name, iters);                                                \
        for (int r_ = 0; r_ < (repeats); r_++) {                                  \
            double t0_ = now_ns();                                                \
            for (int i_ = 0; i_ < (iters); i_++) {                                \
                if ((stmt) < 0) {                                                 \
                    fprintf(stderr, "%s %s failed\n", impl, name);                \
                    exit(1);                                                      \
                }                                                                 \
            }                                                                     \
            double dt_ = now_ns() - t0_;                                          \
            printf("%s%.1f", r_ ? ", " : "", dt_ / (iters));                      \
        }                                                                         \
        printf("]}\n");                                                           \
        fflush(stdout);                                                           \
    } while (0)

static inline int wanted(int argc, char **argv, const char *op)
{
    if (argc <= 3)
        return 1;
    for (int i = 3; i < argc; i++)
        if (!strcmp(argv[i], op))
            return 1;
    return 0;
}

#endif
