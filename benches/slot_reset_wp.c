/* How a pool slot's memory is best reset on Linux: a model of a CPython
 * slot (a 10 MiB copy-on-write image of a memfd in a 13 MiB memory), where
 * each "task" reads 400 scattered pages and writes 110, and the reset after
 * it puts every page the slot changed back to the image's contents.
 *
 *   cc -O2 -o /tmp/slot_reset_wp benches/slot_reset_wp.c -lpthread
 *   /tmp/slot_reset_wp scan        # PAGEMAP_SCAN for written, non-file, non-zero pages; copy back
 *   /tmp/slot_reset_wp scan-uffd   # the same, with the image registered with userfaultfd (WP mode,
 *                                  # nothing protected), which turns the kernel's fault-around off
 *   /tmp/slot_reset_wp wp-async    # write-protect the slot (UFFD_FEATURE_WP_ASYNC): scan only the
 *                                  # pages written since, copy them back, protect them again
 *   add "spin" to keep a second thread of the process busy on the other core (TLB flushes then
 *   need an interrupt there, as with the node's other worker thread)
 *
 * Prints microseconds per task for the task itself and for the reset, the
 * bytes copied back, the pages present in the slot, and checks that the
 * image is intact at the end. benches/README.md has the figures. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct page_region { uint64_t start, end, categories; };
struct pm_scan_arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PM_SCAN_WP_MATCHING 1
#define PAGE_IS_WRITTEN 2
#define PAGE_IS_FILE 4
#define PAGE_IS_PRESENT 8
#define PAGE_IS_SWAPPED 16
#define PAGE_IS_PFNZERO 32
#define FEATURE_WP_SHMEM (1 << 12)
#define FEATURE_WP_UNPOPULATED (1 << 13)
#define FEATURE_WP_ASYNC (1 << 15)

#define PAGE 4096
#define IMAGE (10 << 20)
#define MEMORY (13 << 20)
#define READS 400
#define WRITES 110
#define TASKS 20000

enum mode { SCAN, SCAN_UFFD, WP_ASYNC };
static int pagemap;
static char *image, *slot;
static volatile int stop;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *spin(void *arg) {
  (void)arg;
  while (!stop) {
  }
  return 0;
}

static long scan(struct pm_scan_arg *a) {
  long n = ioctl(pagemap, PAGEMAP_SCAN, a);
  if (n < 0) {
    perror("PAGEMAP_SCAN");
    exit(1);
  }
  return n;
}

/* Puts back every page the scan reports; returns the bytes copied. */
static size_t reset(enum mode mode) {
  struct page_region regions[64];
  uint64_t cursor = (uint64_t)slot, end = (uint64_t)slot + MEMORY;
  size_t copied = 0;
  for (;;) {
    struct pm_scan_arg a = {.size = sizeof a, .start = cursor, .end = end,
                            .vec = (uint64_t)regions, .vec_len = 64, .max_pages = MEMORY / PAGE};
    if (mode == WP_ASYNC) {
      a.category_mask = a.return_mask = PAGE_IS_WRITTEN;
    } else {
      a.category_inverted = PAGE_IS_PFNZERO | PAGE_IS_FILE;
      a.category_mask = PAGE_IS_WRITTEN | PAGE_IS_PFNZERO | PAGE_IS_FILE;
      a.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
    }
    long n = scan(&a);
    for (long i = 0; i < n; i++) {
      size_t off = regions[i].start - (uint64_t)slot, len = regions[i].end - regions[i].start;
      size_t in_image = off >= IMAGE ? 0 : (off + len <= IMAGE ? len : IMAGE - off);
      memcpy(slot + off, image + off, in_image);
      memset(slot + off + in_image, 0, len - in_image);
      copied += len;
    }
    if (mode == WP_ASYNC) { /* protect again what was just put back */
      struct pm_scan_arg p = {.size = sizeof p, .flags = PM_SCAN_WP_MATCHING, .start = cursor,
                              .end = a.walk_end, .category_mask = PAGE_IS_WRITTEN,
                              .return_mask = PAGE_IS_WRITTEN};
      scan(&p);
    }
    cursor = a.walk_end;
    if (cursor >= end || n < 64) return copied;
  }
}

static void register_uffd(enum mode mode) {
  int uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
  uint64_t features = FEATURE_WP_SHMEM;
  if (mode == WP_ASYNC) features |= FEATURE_WP_ASYNC | FEATURE_WP_UNPOPULATED;
  struct uffdio_api api = {.api = UFFD_API, .features = features};
  if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api)) {
    perror("userfaultfd");
    exit(1);
  }
  uint64_t len = mode == WP_ASYNC ? MEMORY : IMAGE;
  struct uffdio_register r = {.range = {(uint64_t)slot, len}, .mode = UFFDIO_REGISTER_MODE_WP};
  if (ioctl(uffd, UFFDIO_REGISTER, &r)) {
    perror("UFFDIO_REGISTER");
    exit(1);
  }
  if (mode == WP_ASYNC) { /* protect the whole slot once */
    struct pm_scan_arg p = {.size = sizeof p, .flags = PM_SCAN_WP_MATCHING, .start = (uint64_t)slot,
                            .end = (uint64_t)slot + MEMORY, .category_mask = PAGE_IS_WRITTEN,
                            .return_mask = PAGE_IS_WRITTEN};
    scan(&p);
  }
}

static int present_pages(void) {
  int present = 0;
  for (size_t p = 0; p < MEMORY / PAGE; p++) {
    uint64_t entry;
    pread(pagemap, &entry, 8, ((uintptr_t)slot / PAGE + p) * 8);
    present += entry >> 63;
  }
  return present;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s scan|scan-uffd|wp-async [spin]\n", argv[0]);
    return 2;
  }
  enum mode mode = !strcmp(argv[1], "wp-async") ? WP_ASYNC : !strcmp(argv[1], "scan-uffd") ? SCAN_UFFD : SCAN;
  pagemap = open("/proc/self/pagemap", O_RDONLY);
  int memfd = memfd_create("image", 0);
  image = malloc(IMAGE);
  srand(1);
  for (size_t i = 0; i < IMAGE; i++) image[i] = rand();
  if (ftruncate(memfd, IMAGE) || pwrite(memfd, image, IMAGE, 0) != IMAGE) return 1;
  slot = mmap(0, MEMORY, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  mmap(slot, IMAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, memfd, 0);
  if (mode != SCAN) register_uffd(mode);
  pthread_t spinner;
  if (argc > 2) pthread_create(&spinner, 0, spin, 0);

  int reads[READS], writes[WRITES];
  for (int i = 0; i < READS; i++) reads[i] = rand() % (MEMORY / PAGE);
  for (int i = 0; i < WRITES; i++) writes[i] = rand() % (MEMORY / PAGE);
  volatile char sink = 0;
  double task_s = 0, reset_s = 0;
  size_t copied = 0;
  for (int t = 0; t < TASKS; t++) {
    double t0 = now();
    for (int i = 0; i < READS; i++) sink += slot[(size_t)reads[i] * PAGE];
    for (int i = 0; i < WRITES; i++) slot[(size_t)writes[i] * PAGE + t % PAGE] += 1;
    double t1 = now();
    copied += reset(mode);
    double t2 = now();
    if (t >= 100) { /* the first tasks fault the slot in */
      task_s += t1 - t0;
      reset_s += t2 - t1;
    }
  }
  stop = 1;
  int present = present_pages(); /* before the check below reads every page */
  int damaged = 0;
  for (size_t i = 0; i < IMAGE; i++) damaged += slot[i] != image[i];
  printf("%-9s %s task %6.1f us  reset %6.1f us  copied %zu KiB/task  present %d pages  damaged %d bytes\n",
         argv[1], argc > 2 ? "spin" : "    ", task_s / (TASKS - 100) * 1e6, reset_s / (TASKS - 100) * 1e6,
         copied / TASKS / 1024, present, damaged);
  return damaged != 0;
}
