/* libFuzzer target: the CSV/TSV reader (and the sparse feature rows).  The
   first byte chooses the options: format, delimiter, header, skip. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char delims[] = {0, ',', '\t', ';', '|', ' ', ':', 0};
  mfm_read_opts o = mfm_read_opts_default();
  uint8_t c;
  if (size < 1) return 0;
  c = data[0];
  o.format = (c & 0xc0) == 0xc0 ? MFM_FORMAT_SPARSE : MFM_FORMAT_CSV;
  o.delimiter = delims[c & 7];
  o.header = (int)((c >> 3) & 3) - 1; /* -1, 0, 1 (2: detect too) */
  if (o.header > 1) o.header = -1;
  o.skip_bad = (c >> 5) & 1;
  o.channel = "fuzz";
  fuzz_read(&o, data + 1, size - 1);
  return 0;
}
