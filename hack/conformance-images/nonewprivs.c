/*
 * A stand-in for critest's nonewprivs image, built by
 * hack/conformance_images.py: installed setuid root, it prints the
 * effective uid it runs with ("Effective uid: 0" unless no_new_privs kept
 * the setuid bit from taking effect) and exits.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}
