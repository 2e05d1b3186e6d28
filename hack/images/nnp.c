/* nnp: the test program of the "nonewprivs" image (stands in for
 * registry.k8s.io/e2e-test-images/nonewprivs). Installed setuid root; run as
 * uid 1000 it reports the effective uid it ended up with, so critest's
 * NoNewPrivs specs can tell whether the setuid bit took effect. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}
