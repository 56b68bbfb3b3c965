/* Touches N MiB of memory (argv[1], default 64), then counts forever,
 * writing the count to /tmp/count: a workload whose memory a checkpoint
 * must carry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
    size_t len = mib << 20;
    unsigned char *mem = malloc(len);
    if (!mem) {
        perror("malloc");
        return 1;
    }
    for (size_t i = 0; i < len; i += 4096)
        mem[i] = (unsigned char)(i >> 12);
    printf("touched %zu MiB\n", mib);
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
