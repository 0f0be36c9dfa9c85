/* The same operations through libxenctrl (what xl uses).
 *
 *   xc_ops ITERS REPEATS [OP ...]   OP: xen_version getdomaininfo
 *                                       getdomaininfolist physinfo
 *
 * getdomaininfo is xc_domain_getinfo_single() from Xen 4.18, before that
 * xc_domain_getinfo(xch, 0, 1, ...) (one XEN_DOMCTL_getdomaininfo either way).
 */
#include <stdint.h>
#include <xenctrl.h>

#include "common.h"

#define LIST_MAX 1024

static xc_domaininfo_t infos[LIST_MAX];

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s ITERS REPEATS [OP ...]\n", argv[0]);
        return 2;
    }
    int iters = atoi(argv[1]), repeats = atoi(argv[2]);
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    if (!xch) {
        perror("xc_interface_open");
        return 1;
    }
    xc_physinfo_t phys;
#if XEN_DOMCTL_INTERFACE_VERSION >= 0x16 /* Xen 4.18: xc_dominfo_t gone */
    xc_domaininfo_t one;
#define GETINFO() xc_domain_getinfo_single(xch, 0, &one)
#else
    xc_dominfo_t one;
#define GETINFO() (xc_domain_getinfo(xch, 0, 1, &one) == 1 ? 0 : -1)
#endif
    int n = xc_domain_getinfolist(xch, 0, LIST_MAX, infos);
    printf("{\"impl\": \"libxenctrl_c\", \"domains\": %d, \"domctl_interface\": \"%#x\"}\n", n,
           (unsigned)XEN_DOMCTL_INTERFACE_VERSION);

    if (wanted(argc, argv, "xen_version"))
        BENCH("libxenctrl_c", "xen_version", iters, repeats, xc_version(xch, XENVER_version, NULL));
    if (wanted(argc, argv, "getdomaininfo"))
        BENCH("libxenctrl_c", "getdomaininfo", iters, repeats, GETINFO());
    if (wanted(argc, argv, "getdomaininfolist"))
        BENCH("libxenctrl_c", "getdomaininfolist", iters, repeats, xc_domain_getinfolist(xch, 0, LIST_MAX, infos));
    if (wanted(argc, argv, "physinfo"))
        BENCH("libxenctrl_c", "physinfo", iters, repeats, xc_physinfo(xch, &phys));
    xc_interface_close(xch);
    return 0;
}
