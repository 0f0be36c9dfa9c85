/* What a paused guest holds at boot, read through libxenctrl: one JSON object per line.
 *
 *   pvdump DOMID
 *
 * x86_64 PV:
 *   {"regs": {...}}          vcpu 0's context as xc_vcpu_getcontext gives it: rip, rsp, rsi,
 *                            rflags, the segment selectors, cr3, dr6, dr7, flags, kernel_ss/sp
 *   {"start_info": {...}}    the start_info page rsi points at
 *   {"start_info_page": "..."}  that page's 4096 bytes, hex
 *   {"p2m": [...]}           the p2m list start_info's mfn_list points at (nr_pages entries)
 *   {"table": L, "mfn": M, "entries": [...]}   every page-table page reachable from cr3
 *                            (L = 4..1), but through Xen's own L4 slots
 *
 * Guest memory is mapped by machine frame (xc_map_foreign_range) and guest-virtual
 * addresses are translated by walking the guest's own page tables from cr3, as the MMU
 * does.  Built per Debian suite by tools/run-tests against that suite's libxen-dev; run by
 * tests/realxen/test_build_layout.py on a guest `xl create -p` made, to compare the layout
 * and page tables libxenguest wrote with xenprivcmd.build's.
 *
 * arm64:
 *   {"regs": {...}}          vcpu 0's context: pc64, x0..x3, cpsr, sctlr, ttbr0, ttbr1, ttbcr, flags
 *   {"params": {...}}        the HVM params of the magic pages: console_pfn, store_pfn and their
 *                            event channels (xc_hvm_param_get)
 */
#define XC_WANT_COMPAT_MAP_FOREIGN_API
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <xenctrl.h>
#include <xen/hvm/params.h>

#if defined(__x86_64__)

#define ENTRIES 512
#define MFN_MASK ((1ULL << 40) - 1)
/* Xen's own L4 slots (ROOT_PAGETABLE_FIRST_XEN_SLOT..LAST: 0xffff800000000000 -
 * 0xffff87ffffffffff), filled by Xen when it validates the L4: not the guest's. */
#define FIRST_XEN_SLOT 256
#define LAST_XEN_SLOT 271

static xc_interface *xch;
static uint32_t domid;

static uint64_t *map(uint64_t mfn)
{
    uint64_t *p = xc_map_foreign_range(xch, domid, 4096, PROT_READ, mfn);
    if (!p) {
        fprintf(stderr, "pvdump: cannot map mfn %#" PRIx64 "\n", mfn);
        exit(1);
    }
    return p;
}

static uint64_t translate(uint64_t l4mfn, uint64_t va)
{
    uint64_t mfn = l4mfn;
    for (int level = 3; level >= 0; level--) {
        uint64_t *t = map(mfn);
        uint64_t e = t[(va >> (12 + 9 * level)) & (ENTRIES - 1)];
        munmap(t, 4096);
        if (!(e & 1)) {
            fprintf(stderr, "pvdump: %#" PRIx64 " is not mapped (L%d)\n", va, level + 1);
            exit(1);
        }
        mfn = (e >> 12) & MFN_MASK;
    }
    return mfn;
}

static void dump_table(int level, uint64_t mfn)
{
    uint64_t *t = map(mfn);
    uint64_t copy[ENTRIES];
    for (int i = 0; i < ENTRIES; i++)
        copy[i] = t[i];
    munmap(t, 4096);
    printf("{\"table\": %d, \"mfn\": %" PRIu64 ", \"entries\": [", level, mfn);
    for (int i = 0; i < ENTRIES; i++)
        printf("%s%" PRIu64, i ? ", " : "", copy[i]);
    printf("]}\n");
    if (level == 1)
        return;
    for (int i = 0; i < ENTRIES; i++) {
        if (level == 4 && i >= FIRST_XEN_SLOT && i <= LAST_XEN_SLOT)
            continue;
        if ((copy[i] & 1) && !(level < 4 && (copy[i] & 0x80)))
            dump_table(level - 1, (copy[i] >> 12) & MFN_MASK);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: pvdump DOMID\n");
        return 2;
    }
    domid = strtoul(argv[1], NULL, 10);
    xch = xc_interface_open(NULL, NULL, 0);
    if (!xch) {
        perror("xc_interface_open");
        return 1;
    }
    vcpu_guest_context_any_t ctx;
    if (xc_vcpu_getcontext(xch, domid, 0, &ctx)) {
        perror("xc_vcpu_getcontext");
        return 1;
    }
    const vcpu_guest_context_x86_64_t *c = &ctx.x64;
    uint64_t l4mfn = c->ctrlreg[3] >> 12;
    printf("{\"regs\": {\"rip\": %" PRIu64 ", \"rsp\": %" PRIu64 ", \"rsi\": %" PRIu64 ", \"cr3\": %" PRIu64
           ", \"flags\": %" PRIu64 ", \"kernel_sp\": %" PRIu64 ", \"kernel_ss\": %" PRIu64
           ", \"rflags\": %" PRIu64 ", \"cs\": %u, \"ss\": %u, \"ds\": %u, \"es\": %u, \"fs\": %u, \"gs\": %u"
           ", \"dr6\": %" PRIu64 ", \"dr7\": %" PRIu64 "}}\n",
           (uint64_t)c->user_regs.rip, (uint64_t)c->user_regs.rsp, (uint64_t)c->user_regs.rsi,
           (uint64_t)c->ctrlreg[3], (uint64_t)c->flags, (uint64_t)c->kernel_sp, (uint64_t)c->kernel_ss,
           (uint64_t)c->user_regs.rflags, c->user_regs.cs, c->user_regs.ss, c->user_regs.ds, c->user_regs.es,
           c->user_regs.fs, c->user_regs.gs, (uint64_t)c->debugreg[6], (uint64_t)c->debugreg[7]);

    start_info_t *si = (start_info_t *)map(translate(l4mfn, c->user_regs.rsi));
    printf("{\"start_info\": {\"magic\": \"%.31s\", \"nr_pages\": %" PRIu64 ", \"shared_info\": %" PRIu64
           ", \"flags\": %" PRIu32 ", \"store_mfn\": %" PRIu64 ", \"store_evtchn\": %" PRIu32
           ", \"console_mfn\": %" PRIu64 ", \"console_evtchn\": %" PRIu32 ", \"pt_base\": %" PRIu64
           ", \"nr_pt_frames\": %" PRIu64 ", \"mfn_list\": %" PRIu64 ", \"mod_start\": %" PRIu64
           ", \"mod_len\": %" PRIu64 ", \"first_p2m_pfn\": %" PRIu64 ", \"nr_p2m_frames\": %" PRIu64
           ", \"cmd_line\": \"",
           si->magic, (uint64_t)si->nr_pages, (uint64_t)si->shared_info, (uint32_t)si->flags,
           (uint64_t)si->store_mfn, (uint32_t)si->store_evtchn, (uint64_t)si->console.domU.mfn,
           (uint32_t)si->console.domU.evtchn, (uint64_t)si->pt_base, (uint64_t)si->nr_pt_frames,
           (uint64_t)si->mfn_list, (uint64_t)si->mod_start, (uint64_t)si->mod_len, (uint64_t)si->first_p2m_pfn,
           (uint64_t)si->nr_p2m_frames);
    for (int i = 0; i < MAX_GUEST_CMDLINE && si->cmd_line[i]; i++) {
        unsigned char ch = si->cmd_line[i];
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 32 || ch > 126)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    printf("\"}}\n");
    printf("{\"start_info_page\": \"");
    for (int i = 0; i < 4096; i++)
        printf("%02x", ((const unsigned char *)si)[i]);
    printf("\"}\n");
    uint64_t nr_pages = si->nr_pages, mfn_list = si->mfn_list;
    munmap(si, 4096);

    printf("{\"p2m\": [");
    for (uint64_t pfn = 0; pfn < nr_pages; pfn += ENTRIES) {
        uint64_t *p = map(translate(l4mfn, mfn_list + pfn * 8));
        for (uint64_t i = 0; i < ENTRIES && pfn + i < nr_pages; i++)
            printf("%s%" PRIu64, pfn + i ? ", " : "", p[i]);
        munmap(p, 4096);
    }
    printf("]}\n");

    dump_table(4, l4mfn);
    xc_interface_close(xch);
    return 0;
}

#elif defined(__aarch64__)

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: pvdump DOMID\n");
        return 2;
    }
    uint32_t domid = strtoul(argv[1], NULL, 10);
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    if (!xch) {
        perror("xc_interface_open");
        return 1;
    }
    vcpu_guest_context_any_t ctx;
    if (xc_vcpu_getcontext(xch, domid, 0, &ctx)) {
        perror("xc_vcpu_getcontext");
        return 1;
    }
    const vcpu_guest_context_t *c = &ctx.c;
    printf("{\"regs\": {\"pc64\": %" PRIu64 ", \"x0\": %" PRIu64 ", \"x1\": %" PRIu64 ", \"x2\": %" PRIu64
           ", \"x3\": %" PRIu64 ", \"cpsr\": %" PRIu64 ", \"sctlr\": %" PRIu64 ", \"ttbr0\": %" PRIu64
           ", \"ttbr1\": %" PRIu64 ", \"ttbcr\": %" PRIu64 ", \"flags\": %" PRIu64 "}}\n",
           (uint64_t)c->user_regs.pc64, (uint64_t)c->user_regs.x0, (uint64_t)c->user_regs.x1,
           (uint64_t)c->user_regs.x2, (uint64_t)c->user_regs.x3, (uint64_t)c->user_regs.cpsr, (uint64_t)c->sctlr,
           (uint64_t)c->ttbr0, (uint64_t)c->ttbr1, (uint64_t)c->ttbcr, (uint64_t)c->flags);
    static const struct { const char *name; int param; } params[] = {
        {"console_pfn", HVM_PARAM_CONSOLE_PFN}, {"store_pfn", HVM_PARAM_STORE_PFN},
        {"console_evtchn", HVM_PARAM_CONSOLE_EVTCHN}, {"store_evtchn", HVM_PARAM_STORE_EVTCHN},
    };
    printf("{\"params\": {");
    for (unsigned i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
        uint64_t value;
        if (xc_hvm_param_get(xch, domid, params[i].param, &value)) {
            perror(params[i].name);
            return 1;
        }
        printf("%s\"%s\": %" PRIu64, i ? ", " : "", params[i].name, value);
    }
    printf("}}\n");
    xc_interface_close(xch);
    return 0;
}

#else

int main(void)
{
    fprintf(stderr, "pvdump: x86_64 and arm64 only\n");
    return 2;
}

#endif
