/* Every domain as libxenctrl reads it: one JSON object per line, each field of
 * xen_domctl_getdomaininfo by its name in Xen's own header, compiled by gcc.
 *
 *   dominfo            all domains (xc_domain_getinfolist from domid 0)
 *
 * Built per Debian suite by tools/run-tests against that suite's libxen-dev
 * (tools/xenvm/xenvmlib/sysroot.py), run inside its dom0 by
 * tests/realxen/test_dominfo.py, which compares every DomainInfo field of
 * xenprivcmd with these values: an independent reading of the same
 * hypercall, with no table of ours in between.
 */
#include <inttypes.h>
#include <stdio.h>
#include <xenctrl.h>

#define MAX 1024

static xc_domaininfo_t infos[MAX];

int main(void)
{
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    if (!xch) {
        perror("xc_interface_open");
        return 1;
    }
    int n = xc_domain_getinfolist(xch, 0, MAX, infos);
    if (n < 0) {
        perror("xc_domain_getinfolist");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        const xc_domaininfo_t *d = &infos[i];
        printf("{\"domid\": %u, \"flags\": %" PRIu32 ", \"tot_pages\": %" PRIu64 ", \"max_pages\": %" PRIu64
               ", \"outstanding_pages\": %" PRIu64 ", \"shr_pages\": %" PRIu64 ", \"paged_pages\": %" PRIu64
               ", \"shared_info_frame\": %" PRIu64 ", \"cpu_time\": %" PRIu64 ", \"nr_online_vcpus\": %" PRIu32
               ", \"max_vcpu_id\": %" PRIu32 ", \"ssidref\": %" PRIu32 ", \"cpupool\": %" PRIu32
               ", \"handle\": \"",
               (unsigned)d->domain, d->flags, (uint64_t)d->tot_pages, (uint64_t)d->max_pages,
               (uint64_t)d->outstanding_pages, (uint64_t)d->shr_pages, (uint64_t)d->paged_pages,
               (uint64_t)d->shared_info_frame, (uint64_t)d->cpu_time, d->nr_online_vcpus, d->max_vcpu_id,
               d->ssidref, d->cpupool);
        for (int b = 0; b < 16; b++)
            printf("%02x", d->handle[b]);
        printf("\"}\n");
    }
    xc_interface_close(xch);
    return 0;
}
