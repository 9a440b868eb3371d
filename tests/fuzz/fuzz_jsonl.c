/* libFuzzer target: the JSON lines reader.  The first byte chooses skip
   and named columns. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mfm_read_opts o = mfm_read_opts_default();
  if (size < 1) return 0;
  o.format = MFM_FORMAT_JSONL;
  o.skip_bad = data[0] & 1;
  if (data[0] & 2) {
    o.col_name[MFM_COL_USER] = "u";
    o.col_name[MFM_COL_ITEM] = "i";
    o.col_name[MFM_COL_WEIGHT] = "w";
  }
  o.channel = "fuzz";
  fuzz_read(&o, data + 1, size - 1);
  return 0;
}
