/* libFuzzer target: the byte source with the RecordIO unwrapper (and the
   gzip inflater behind it): the input is a file's raw bytes, read through
   a memfd in small blocks so records straddle reads. */
#define _GNU_SOURCE 1 /* memfd_create */
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "moonfm/reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mfm_source_opts so = {1, 0};
  mfm_source *s = NULL;
  mfm_err err;
  char buf[257];
  int fd;
  if (size < 1) return 0;
  so.block = 1 + data[0] % 64; /* tiny raw reads */
  fd = memfd_create("fuzz", 0);
  if (fd < 0) return 0;
  if (write(fd, data + 1, size - 1) != (ssize_t)(size - 1) ||
      lseek(fd, 0, SEEK_SET) != 0) {
    close(fd);
    return 0;
  }
  if (mfm_source_open_fd(fd, "fuzz", &so, &s, &err) != MFM_OK) return 0;
  for (;;) {
    size_t n = 0;
    int doc_end = 0;
    if (mfm_source_read(s, buf, 1 + data[0] % 256, &n, &doc_end, &err))
      break;
    if (n == 0 && !doc_end) break;
  }
  mfm_source_free(s);
  return 0;
}
