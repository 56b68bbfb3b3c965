/* The pre-copy benchmark's workload (issue 14 §4): holds SIZE_MIB of
 * memory, all of it touched once, then dirties PERCENT of it per second,
 * walking through it page by page in ten steps a second, so the pages a
 * dump must take again grow with the time since the last one. Writes its
 * progress (the number of steps) to /tmp/count and "ready" to /tmp/ready
 * once the memory is populated.
 *   usage: dirtier SIZE_MIB PERCENT_PER_SECOND
 * Built static (bench/predump.sh) so it runs in the busybox test image. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void put(const char *path, long v) {
    FILE *f = fopen(path, "w");
    if (f) { fprintf(f, "%ld\n", v); fclose(f); }
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: dirtier SIZE_MIB PERCENT_PER_SECOND\n"); return 2; }
    long pages = atol(argv[1]) * 256, page = 4096;
    double pct = atof(argv[2]);
    unsigned char *mem = malloc(pages * page);
    if (!mem) { perror("malloc"); return 1; }
    for (long i = 0; i < pages; i++) mem[i * page] = 1;
    put("/tmp/ready", 1);
    long per_step = (long)(pages * pct / 100.0 / 10.0), at = 0, step = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        for (long i = 0; i < per_step; i++) { mem[at * page]++; at = (at + 1) % pages; }
        put("/tmp/count", ++step);
        next.tv_nsec += 100000000;
        if (next.tv_nsec >= 1000000000) { next.tv_sec++; next.tv_nsec -= 1000000000; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
}
