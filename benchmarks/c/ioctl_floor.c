/* The floor: the privcmd hypercall ioctl issued directly, on prebuilt
 * requests, the way libxencall does it (buffers from /dev/xen/hypercall when
 * it exists, else locked anonymous memory; every page written first).
 *
 *   ioctl_floor ITERS REPEATS [OP ...]   OP: xen_version getdomaininfo
 *                                            getdomaininfolist physinfo
 *                                            getvcpuinfo (dom0's vcpu 0)
 *                                            sched_params (sched_id, then
 *                                            scheduler_op getinfo of dom0)
 */
#define __XEN_TOOLS__ 1
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xen/xen.h>
#include <xen/domctl.h>
#include <xen/sysctl.h>
#include <xen/version.h>

#include "common.h"

typedef struct {
    uint64_t op;
    uint64_t arg[5];
} privcmd_hypercall_t;

#define IOCTL_PRIVCMD_HYPERCALL _IOC(_IOC_NONE, 'P', 0, sizeof(privcmd_hypercall_t))
#define LIST_MAX 1024

static int fd;

/* Every page is written once before any hypercall, on both paths, as
 * libxencall's xencall_alloc_buffer_pages() does (memset) and as
 * xenprivcmd's _map_device() does.  On Arm this is required, not cosmetic:
 * Xen copies to a guest buffer by translating its virtual address with
 * "at s12e1w" (get_page_from_gva), which never faults the page in or marks
 * it dirty for the kernel.  A page of a fresh /dev/xen/hypercall mapping is
 * writable but clean, and on a CPU without hardware dirty-bit management
 * (no FEAT_HAFDBS, e.g. QEMU's cortex-a57) Linux maps a clean page
 * read-only in hardware until the first write fault, so that translation
 * fails and the hypercall returns EFAULT (getdomaininfolist writing its
 * records to the untouched pages at buf+8192). */
static void *hypercall_buffer(size_t size)
{
    int bfd = open("/dev/xen/hypercall", O_RDWR | O_CLOEXEC);
    void *p;
    if (bfd >= 0) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, bfd, 0);
        close(bfd);
        if (p != MAP_FAILED) {
            memset(p, 0, size);
            return p;
        }
    }
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap hypercall buffer");
        exit(1);
    }
    madvise(p, size, MADV_DONTFORK);
    memset(p, 0, size);
    return p;
}

static int hypercall(privcmd_hypercall_t *hc)
{
    return ioctl(fd, IOCTL_PRIVCMD_HYPERCALL, hc);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s ITERS REPEATS [OP ...]\n", argv[0]);
        return 2;
    }
    int iters = atoi(argv[1]), repeats = atoi(argv[2]);
    fd = open("/dev/xen/privcmd", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        fd = open("/proc/xen/privcmd", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        perror("open privcmd");
        return 1;
    }
    size_t recs = LIST_MAX * sizeof(struct xen_domctl_getdomaininfo);
    size_t size = 2 * 4096 + ((recs + 4095) & ~(size_t)4095);
    char *buf = hypercall_buffer(size);
    struct xen_domctl *domctl = (struct xen_domctl *)buf;
    struct xen_sysctl *sysctl_list = (struct xen_sysctl *)(buf + 1024);
    struct xen_sysctl *sysctl_phys = (struct xen_sysctl *)(buf + 2048);
    struct xen_domctl_getdomaininfo *records = (struct xen_domctl_getdomaininfo *)(buf + 8192);

    privcmd_hypercall_t hc_version = {__HYPERVISOR_xen_version, {XENVER_version, 0, 0, 0, 0}};

    domctl->cmd = XEN_DOMCTL_getdomaininfo;
    domctl->interface_version = XEN_DOMCTL_INTERFACE_VERSION;
    domctl->domain = 0;
    privcmd_hypercall_t hc_info = {__HYPERVISOR_domctl, {(uint64_t)(uintptr_t)domctl, 0, 0, 0, 0}};

    sysctl_list->cmd = XEN_SYSCTL_getdomaininfolist;
    sysctl_list->interface_version = XEN_SYSCTL_INTERFACE_VERSION;
    sysctl_list->u.getdomaininfolist.first_domain = 0;
    sysctl_list->u.getdomaininfolist.max_domains = LIST_MAX;
    set_xen_guest_handle(sysctl_list->u.getdomaininfolist.buffer, records);
    privcmd_hypercall_t hc_list = {__HYPERVISOR_sysctl, {(uint64_t)(uintptr_t)sysctl_list, 0, 0, 0, 0}};

    sysctl_phys->cmd = XEN_SYSCTL_physinfo;
    sysctl_phys->interface_version = XEN_SYSCTL_INTERFACE_VERSION;
    privcmd_hypercall_t hc_phys = {__HYPERVISOR_sysctl, {(uint64_t)(uintptr_t)sysctl_phys, 0, 0, 0, 0}};

    struct xen_domctl *vcpu = (struct xen_domctl *)(buf + 3072);
    vcpu->cmd = XEN_DOMCTL_getvcpuinfo;
    vcpu->interface_version = XEN_DOMCTL_INTERFACE_VERSION;
    vcpu->domain = 0;
    vcpu->u.getvcpuinfo.vcpu = 0;
    privcmd_hypercall_t hc_vcpu = {__HYPERVISOR_domctl, {(uint64_t)(uintptr_t)vcpu, 0, 0, 0, 0}};

    struct xen_sysctl *sid = (struct xen_sysctl *)(buf + 4096 + 2048);
    sid->cmd = XEN_SYSCTL_sched_id;
    sid->interface_version = XEN_SYSCTL_INTERFACE_VERSION;
    privcmd_hypercall_t hc_sid = {__HYPERVISOR_sysctl, {(uint64_t)(uintptr_t)sid, 0, 0, 0, 0}};
    struct xen_domctl *sched = (struct xen_domctl *)(buf + 4096 + 3072);
    sched->cmd = XEN_DOMCTL_scheduler_op;
    sched->interface_version = XEN_DOMCTL_INTERFACE_VERSION;
    sched->domain = 0;
    sched->u.scheduler_op.cmd = XEN_DOMCTL_SCHEDOP_getinfo;
    privcmd_hypercall_t hc_sched = {__HYPERVISOR_domctl, {(uint64_t)(uintptr_t)sched, 0, 0, 0, 0}};

    if (hypercall(&hc_list) < 0) {
        perror("getdomaininfolist");
        return 1;
    }
    printf("{\"impl\": \"ioctl_c\", \"domains\": %u}\n", sysctl_list->u.getdomaininfolist.num_domains);

    if (wanted(argc, argv, "xen_version"))
        BENCH("ioctl_c", "xen_version", iters, repeats, hypercall(&hc_version));
    if (wanted(argc, argv, "getdomaininfo"))
        BENCH("ioctl_c", "getdomaininfo", iters, repeats, hypercall(&hc_info));
    if (wanted(argc, argv, "getdomaininfolist"))
        BENCH("ioctl_c", "getdomaininfolist", iters, repeats, hypercall(&hc_list));
    if (wanted(argc, argv, "physinfo"))
        BENCH("ioctl_c", "physinfo", iters, repeats, hypercall(&hc_phys));
    if (wanted(argc, argv, "getvcpuinfo"))
        BENCH("ioctl_c", "getvcpuinfo", iters, repeats, hypercall(&hc_vcpu));
    if (wanted(argc, argv, "sched_params"))
        BENCH("ioctl_c", "sched_params", iters, repeats,
              (hypercall(&hc_sid) < 0 ? -1 : (sched->u.scheduler_op.sched_id = sid->u.sched_id.sched_id,
                                                hypercall(&hc_sched))));
    return 0;
}
