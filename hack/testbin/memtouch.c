/* Touches N MiB of memory (argv[1], default 64), then counts forever,
 * writing the count to /tmp/count: a workload whose memory a checkpoint
 * must carry. argv[2] says what the pages hold:
 *   byte    (default) one byte per page, the rest zero: compresses to nothing
 *   random  every byte random: incompressible
 *   typical half the pages zero, half random (the benchmark's "typical
 *           memory"), alternating */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static void fill_random(unsigned char *page) {
    for (size_t j = 0; j < 4096; j += 8) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        memcpy(page + j, &rng, 8);
    }
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
    const char *fill = argc > 2 ? argv[2] : "byte";
    int random = !strcmp(fill, "random"), typical = !strcmp(fill, "typical");
    if (!random && !typical && strcmp(fill, "byte")) {
        fprintf(stderr, "memtouch: fill is byte, random or typical, not %s\n", fill);
        return 2;
    }
    size_t len = mib << 20;
    unsigned char *mem = malloc(len);
    if (!mem) {
        perror("malloc");
        return 1;
    }
    for (size_t i = 0; i < len; i += 4096) {
        if (random || (typical && (i >> 12) % 2))
            fill_random(mem + i);
        else if (typical)
            memset(mem + i, 0, 4096); /* present, all zero */
        else
            mem[i] = (unsigned char)(i >> 12);
    }
    printf("touched %zu MiB (%s)\n", mib, fill);
    fflush(stdout);
    for (unsigned long n = 0;; n++) {
        FILE *f = fopen("/tmp/count", "w");
        if (f) {
            fprintf(f, "%lu\n", n);
            fclose(f);
        }
        usleep(100000);
    }
}
