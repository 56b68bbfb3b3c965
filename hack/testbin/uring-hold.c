/* Holds an io_uring instance open, then waits: a process CRIU cannot
 * checkpoint, for the tests of ARCH's refusal path. */
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int fd = (int)syscall(__NR_io_uring_setup, 8, &p);
    if (fd < 0) {
        perror("io_uring_setup");
        return 1;
    }
    printf("holding io_uring fd %d\n", fd);
    fflush(stdout);
    for (;;)
        pause();
}
