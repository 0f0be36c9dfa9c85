/* The same operations through libxenctrl (what xl uses).
 *
 *   xc_ops ITERS REPEATS [OP ...]   OP: xen_version getdomaininfo
 *                                       getdomaininfolist physinfo
 *                                       getvcpuinfo (xc_vcpu_getinfo, dom0 vcpu 0)
 *                                       sched_params (xc_sched_id, then
 *                                         xc_sched_credit[2]_domain_get of dom0)
 *                                       vcpus:DOMID:N (xc_vcpu_getinfo of
 *                                         vcpus 0..N-1: one op is the loop)
 *                                       infos:ID,ID,... (getdomaininfo of each)
 *
 * getdomaininfo is xc_domain_getinfo_single() from Xen 4.18, before that
 * xc_domain_getinfo(xch, 0, 1, ...) (one XEN_DOMCTL_getdomaininfo either way).
 */
#include <stdint.h>
#include <xenctrl.h>

#include "common.h"

#define LIST_MAX 1024

static xc_domaininfo_t infos[LIST_MAX];

static xc_interface *xch;

static int vcpu_loop(uint32_t domid, int n)
{
    xc_vcpuinfo_t info;
    for (int v = 0; v < n; v++)
        if (xc_vcpu_getinfo(xch, domid, v, &info) < 0)
            return -1;
    return 0;
}

static uint32_t ids[1024];

static int info_loop(int n)
{
#if XEN_DOMCTL_INTERFACE_VERSION >= 0x16
    xc_domaininfo_t one;
    for (int i = 0; i < n; i++)
        if (xc_domain_getinfo_single(xch, ids[i], &one) < 0)
            return -1;
#else
    xc_dominfo_t one;
    for (int i = 0; i < n; i++)
        if (xc_domain_getinfo(xch, ids[i], 1, &one) != 1 || one.domid != ids[i])
            return -1;
#endif
    return 0;
}

static int sched_params(void)
{
    int sid;
    if (xc_sched_id(xch, &sid) < 0)
        return -1;
    if (sid == XEN_SCHEDULER_CREDIT2) {
        struct xen_domctl_sched_credit2 p;
        return xc_sched_credit2_domain_get(xch, 0, &p);
    }
    struct xen_domctl_sched_credit p;
    return xc_sched_credit_domain_get(xch, 0, &p);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s ITERS REPEATS [OP ...]\n", argv[0]);
        return 2;
    }
    int iters = atoi(argv[1]), repeats = atoi(argv[2]);
    xch = xc_interface_open(NULL, NULL, 0);
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
    xc_vcpuinfo_t vinfo;
    if (wanted(argc, argv, "getvcpuinfo"))
        BENCH("libxenctrl_c", "getvcpuinfo", iters, repeats, xc_vcpu_getinfo(xch, 0, 0, &vinfo));
    if (wanted(argc, argv, "sched_params"))
        BENCH("libxenctrl_c", "sched_params", iters, repeats, sched_params());
    for (int a = 3; a < argc; a++) {
        unsigned dom, nv;
        if (sscanf(argv[a], "vcpus:%u:%u", &dom, &nv) == 2)
            BENCH("libxenctrl_c", argv[a], iters, repeats, vcpu_loop(dom, (int)nv));
        if (!strncmp(argv[a], "infos:", 6)) {
            int n = 0;
            for (char *p = argv[a] + 6; *p && n < 1024; n++) {
                ids[n] = (uint32_t)strtoul(p, &p, 10);
                if (*p == ',')
                    p++;
            }
            BENCH("libxenctrl_c", argv[a], iters, repeats, info_loop(n));
        }
    }
    xc_interface_close(xch);
    return 0;
}
