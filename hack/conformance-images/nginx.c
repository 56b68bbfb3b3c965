/*
 * A stand-in for the nginx images critest runs (its e2e nginx image and
 * its host-network nginx image), built by hack/conformance_images.py:
 * what the specs look at, nothing more.
 *   - the process is /usr/sbin/nginx (comm "nginx", for `pidof nginx`) and
 *     its command line reads "nginx: master process ..." (/proc/1/cmdline);
 *   - it writes its pid to /var/run/nginx.pid;
 *   - it answers HTTP GET with 200 on port 80 and on 12003 (the host-network
 *     image's port), whichever it can bind.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SELF "/usr/sbin/nginx"
#define TITLE "nginx: master process nginx -g daemon off;"

static int listen_on(int port)
{
    struct sockaddr_in a;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0) {
        fprintf(stderr, "nginx: cannot listen on %d: %s\n", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void answer(int c)
{
    static const char body[] = "<html><body>arch conformance nginx</body></html>\n";
    char buf[4096], head[256];
    ssize_t n = read(c, buf, sizeof(buf));
    (void)n;
    int h = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     sizeof(body) - 1);
    if (write(c, head, h) < 0 || write(c, body, sizeof(body) - 1) < 0)
        perror("nginx: write");
    close(c);
}

int main(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], TITLE) != 0) {
        char *args[] = {TITLE, NULL};
        execv(SELF, args);
        perror("nginx: exec " SELF);
        return 127;
    }
    mkdir("/var/run", 0755);
    FILE *pf = fopen("/var/run/nginx.pid", "w");
    if (pf) {
        fprintf(pf, "%d\n", (int)getpid());
        fclose(pf);
    }
    int fds[2] = {listen_on(80), listen_on(12003)};
    if (fds[0] < 0 && fds[1] < 0)
        return 1;
    for (;;) {
        fd_set set;
        int max = -1;
        FD_ZERO(&set);
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0) {
                FD_SET(fds[i], &set);
                if (fds[i] > max)
                    max = fds[i];
            }
        if (select(max + 1, &set, NULL, NULL, NULL) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0 && FD_ISSET(fds[i], &set)) {
                int c = accept(fds[i], NULL, NULL);
                if (c >= 0)
                    answer(c);
            }
    }
}
