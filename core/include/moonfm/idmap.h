/* Id maps: external ids (any bytes: "u123", "42", "9007199254740993") to
   dense indices 0..n-1 in first-seen order, and back.  Kept with the model
   so that recommendations speak the ids of the data. */
#ifndef MOONFM_IDMAP_H
#define MOONFM_IDMAP_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct mfm_idmap mfm_idmap;

mfm_status mfm_idmap_new(mfm_idmap **out, mfm_err *err);
void mfm_idmap_free(mfm_idmap *m);

/* Number of ids. */
int32_t mfm_idmap_size(const mfm_idmap *m);

/* Index of id (len bytes, borrowed), or -1 when absent. */
int32_t mfm_idmap_find(const mfm_idmap *m, const char *id, size_t len);

/* Index of id, adding it at the end when absent.  MFM_ENOMEM, or
   MFM_EINVAL when the map already holds INT32_MAX ids. */
mfm_status mfm_idmap_intern(mfm_idmap *m, const char *id, size_t len,
                            int32_t *index, mfm_err *err);

/* The id of index i (0 <= i < size), not NUL-terminated; *len its length.
   Borrowed from the map. */
const char *mfm_idmap_get(const mfm_idmap *m, int32_t i, size_t *len);

/* Serialised form, for the model file: all ids concatenated (bytes) and
   size + 1 offsets into them.  Borrowed from the map; valid until the map
   next changes. */
void mfm_idmap_view(const mfm_idmap *m, const char **bytes,
                    const int64_t **offsets);

/* Rebuilds a map from that form (borrowed).  MFM_EFORMAT when offsets are
   not increasing, run past n_bytes, or an id repeats. */
mfm_status mfm_idmap_from_view(const char *bytes, int64_t n_bytes,
                               const int64_t *offsets, int32_t n,
                               mfm_idmap **out, mfm_err *err);

/* A copy. */
mfm_status mfm_idmap_clone(const mfm_idmap *m, mfm_idmap **out, mfm_err *err);

/* ---- Additions (data layer) ------------------------------------------ */

/* The map's hash of len bytes (64-bit, unseeded). */
uint64_t mfm_hash_bytes(const void *p, size_t len);

/* find / intern with the hash already computed by mfm_hash_bytes (a reader
   that looks one id up in two maps hashes it once). */
int32_t mfm_idmap_find_hashed(const mfm_idmap *m, const char *id, size_t len,
                              uint64_t h);
mfm_status mfm_idmap_intern_hashed(mfm_idmap *m, const char *id, size_t len,
                                   uint64_t h, int32_t *index, mfm_err *err);

/* Adds id, which the caller knows is not in the map (the reader's cache
   of small integer ids tells), and gives its index.  Its hash slot is
   placed later, together with up to 63 others so that their cache misses
   overlap: before any call that reads the table, or by mfm_idmap_settle.
   Errors as mfm_idmap_intern.  Adding an id that is there breaks the
   map. */
mfm_status mfm_idmap_append_new(mfm_idmap *m, const char *id, size_t len,
                                int32_t *index, mfm_err *err);
/* Places the slots mfm_idmap_append_new left pending.  A map handed to
   other code (or threads) must be settled: find on an unsettled map
   writes to it. */
void mfm_idmap_settle(mfm_idmap *m);

/* Bytes of heap the map holds (table, offsets, id bytes). */
size_t mfm_idmap_memory(const mfm_idmap *m);

#endif
