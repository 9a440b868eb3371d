/* Shared by the reader fuzz targets: feeds data to a fresh reader of the
   given format and builds the CSR.  Any status is fine; a crash, a
   sanitizer report or a leak is the finding. */
#ifndef MOONFM_FUZZ_READER_H
#define MOONFM_FUZZ_READER_H

#include <stddef.h>
#include <stdint.h>

#include "moonfm/csr.h"
#include "moonfm/idmap.h"
#include "moonfm/reader.h"

static void fuzz_read(const mfm_read_opts *o, const uint8_t *data,
                      size_t size) {
  mfm_idmap *users = NULL, *items = NULL;
  mfm_reader *r = NULL;
  mfm_csr *x = NULL;
  mfm_err err;
  if (mfm_idmap_new(&users, &err) || mfm_idmap_new(&items, &err)) goto done;
  if (mfm_reader_new(o, users, items, 1, 1, &r, &err)) goto done;
  /* Two feeds: rows that straddle documents must not mix. */
  if (mfm_reader_feed_bytes(r, (const char *)data, size / 2, "a", &err) ==
          MFM_OK &&
      mfm_reader_feed_bytes(r, (const char *)data + size / 2,
                            size - size / 2, "b", &err) == MFM_OK)
    mfm_reader_finish(r, &x, &err);
done:
  mfm_csr_free(x);
  mfm_reader_free(r);
  mfm_idmap_free(items);
  mfm_idmap_free(users);
}

#endif
