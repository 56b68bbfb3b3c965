/* The pod sandbox's init for the CRI tests: holds the pod's namespaces
 * until SIGTERM/SIGINT, and reaps children as a PID-namespace init must.
 * A local stand-in for the registry's pause image (there is no registry). */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { _exit(sig == SIGTERM || sig == SIGINT ? 0 : 1); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = reap;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    if (getpid() != 1)
        fprintf(stderr, "pause: not pid 1 (pid %d)\n", (int)getpid());
    for (;;)
        pause();
}
