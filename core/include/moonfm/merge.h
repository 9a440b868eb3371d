/* Combining data read on several hosts (ShardedByS3Key channels, see
   docs/multi-host.md): each host reads its own files into its own id maps;
   the hosts exchange their id lists (mfm_idmap_view) and their
   interactions, and every host rebuilds the same global maps and the same
   global interactions with these two functions.  Nothing here talks to
   other hosts: the exchange is the caller's (moonfm.dist), so both are
   testable in one process. */
#ifndef MOONFM_MERGE_H
#define MOONFM_MERGE_H

#include <stdint.h>

#include "csr.h"
#include "idmap.h"
#include "status.h"

/* Adds the n ids of a serialised map (bytes and n + 1 offsets, the form
   of mfm_idmap_view; borrowed) to dst in their order, each one that dst
   lacks at its end, and writes each id's index in dst to index[i] (n
   values; may be NULL).  Merging every host's list in rank order gives
   the same map on every host: the first host's ids in its order, then
   the second host's new ones, and so on.  MFM_EFORMAT when the offsets
   are not increasing or run past n_bytes, MFM_ENOMEM, MFM_EINVAL when dst
   would pass INT32_MAX ids (dst then holds a prefix of the ids).  Not
   thread-safe for one dst. */
mfm_status mfm_idmap_merge(mfm_idmap *dst, const char *bytes,
                           int64_t n_bytes, const int64_t *offsets,
                           int32_t n, int32_t *index, mfm_err *err);

/* One host's interactions with the maps that take its indices to the
   global ones: row r of csr becomes row row_map[r], column c becomes
   col_map[c] (either map NULL: unchanged).  All borrowed. */
typedef struct mfm_csr_part {
  const mfm_csr *csr;
  const int32_t *row_map; /* csr->n_rows entries, or NULL */
  const int32_t *col_map; /* csr->n_cols entries, or NULL */
} mfm_csr_part;

/* The n_rows x n_cols interactions holding every entry of every part,
   remapped; an entry present in several parts (or mapped onto one cell
   twice) is summed, as when one host reads every file
   (mfm_csr_from_coo).  Parts whose keep_rows / keep_cols filters reject
   an entry drop it: keep an entry when its global row is in
   [row_lo, row_hi) or its global column in [col_lo, col_hi) (pass 0,
   n_rows, 0, 0 to keep everything).  MFM_EINVAL (naming the part) for an
   index a map sends out of range; MFM_ENOMEM; *out is the caller's
   (mfm_csr_free). */
mfm_status mfm_csr_merge(const mfm_csr_part *parts, int n_parts,
                         int32_t n_rows, int32_t n_cols, int32_t row_lo,
                         int32_t row_hi, int32_t col_lo, int32_t col_hi,
                         mfm_csr **out, mfm_err *err);

/* A copy of a with every row outside [lo, hi) emptied (same shape), e.g.
   the block of users one host evaluates.  0 <= lo <= hi <= n_rows, else
   MFM_EINVAL; MFM_ENOMEM. */
mfm_status mfm_csr_slice_rows(const mfm_csr *a, int32_t lo, int32_t hi,
                              mfm_csr **out, mfm_err *err);

#endif
