/* The model file (docs/model-file.md has the byte layout): magic, format
   version, flags, an opaque JSON header, a directory of named arrays, the
   arrays themselves 64-byte aligned and little-endian, and a CRC-32 trailer
   over everything before it.  Models and checkpoints share the format; a
   checkpoint sets MFM_MFILE_CHECKPOINT.

   Writing streams through the atomic writer (fileio.h): a failed write
   leaves the previous file intact.  Reading checks every size and offset
   against the file length before touching the arrays, verifies the
   checksum and refuses anything unexpected with MFM_EFORMAT and a message
   that names the path and the field.  A file can be read into memory or
   mapped read-only (for the server). */
#ifndef MOONFM_MFILE_H
#define MOONFM_MFILE_H

#include <stddef.h>
#include <stdint.h>

#include "factors.h"
#include "status.h"

#define MFM_MFILE_MAGIC "MOONFM\0\n"      /* 8 bytes, at offset 0 */
#define MFM_MFILE_END_MAGIC "MFMEND\0\n"  /* 8 bytes, the file's last */
#define MFM_MFILE_VERSION 1u
#define MFM_MFILE_ALIGN 64
#define MFM_MFILE_PREAMBLE 64       /* bytes before the JSON header */
#define MFM_MFILE_ENTRY 96          /* bytes of one directory entry */
#define MFM_MFILE_TRAILER 16
#define MFM_MFILE_MAX_HEADER (16u << 20) /* JSON header cap: 16 MiB */
#define MFM_MFILE_MAX_ARRAYS 4096

/* Flags (a u32 in the preamble); a reader refuses unknown bits. */
#define MFM_MFILE_CHECKPOINT 1u     /* training state, not a final model */
#define MFM_MFILE_KNOWN_FLAGS 1u

/* Writes a model file atomically: path (borrowed), flags, the JSON header
   (header_len bytes, borrowed, stored as is), and n arrays (borrowed; names
   non-empty, shorter than 48 bytes, unique; dtype known; rows, cols >= 0;
   data may be NULL only when the array is empty).  MFM_EINVAL for bad
   arguments, MFM_EIO (message naming the path) when the disk refuses; the
   previous file at path is then left as it was.  Thread-safe for distinct
   paths. */
mfm_status mfm_mfile_write(const char *path, uint32_t flags,
                           const char *header, size_t header_len,
                           const mfm_array *arrays, int n, mfm_err *err);

/* An open, validated model file. */
typedef struct mfm_mfile mfm_mfile;

typedef enum mfm_mfile_mode {
  MFM_MFILE_READ = 0, /* read the whole file into an aligned buffer */
  MFM_MFILE_MAP = 1   /* mmap read-only: arrays stay in the page cache */
} mfm_mfile_mode;

/* Opens and validates path (borrowed).  MFM_EFORMAT with a message
   "<path>: <what is wrong>" for a file that is not a valid model file
   (truncated, corrupt, wrong version, inconsistent sizes); MFM_EIO when it
   cannot be read; MFM_ENOMEM.  Never reads outside the file. */
mfm_status mfm_mfile_open(const char *path, mfm_mfile_mode mode,
                          mfm_mfile **out, mfm_err *err);
/* Releases the file (unmaps it); accepts NULL.  Views taken from it become
   invalid. */
void mfm_mfile_free(mfm_mfile *f);

/* Fields of the preamble. */
uint32_t mfm_mfile_version(const mfm_mfile *f);
uint32_t mfm_mfile_flags(const mfm_mfile *f);
uint64_t mfm_mfile_size(const mfm_mfile *f);
uint32_t mfm_mfile_checksum(const mfm_mfile *f);
/* The path it was opened from, borrowed from f. */
const char *mfm_mfile_path(const mfm_mfile *f);

/* The JSON header bytes, borrowed from f (not NUL-terminated in the file;
   a NUL is added after them in memory for convenience). */
const char *mfm_mfile_header(const mfm_mfile *f, size_t *len);

/* Number of arrays, and array i (0 <= i < count) described in *out, whose
   data points into f (read-only memory when mapped: do not write). */
int mfm_mfile_count(const mfm_mfile *f);
void mfm_mfile_array(const mfm_mfile *f, int i, mfm_array *out);
/* Index of the array named name, or -1. */
int mfm_mfile_find(const mfm_mfile *f, const char *name);

/* Copies the file's arrays into n destination arrays (borrowed; their
   data must hold rows * cols elements), matching by name; each must exist
   in the file with the same dtype and shape, otherwise MFM_EFORMAT with a
   message naming the array and both shapes, and nothing is guaranteed
   about what was already copied. */
mfm_status mfm_mfile_fill(const mfm_mfile *f, const mfm_array *dst, int n,
                          mfm_err *err);

/* Names of the arrays of an mfm_factors view in a model file. */
typedef struct mfm_mfile_names {
  const char *user, *item;           /* F32 matrices, same cols */
  const char *user_bias, *item_bias; /* F32 vectors, or NULL / absent */
} mfm_mfile_names;
/* "user_factors", "item_factors", "user_bias", "item_bias". */
mfm_mfile_names mfm_mfile_names_default(void);

/* Fills out with a view straight on the file's arrays (no copy: with
   MFM_MFILE_MAP, on the mapped pages), valid until f is freed.  Bias
   arrays that are absent give NULL (zeros).  MFM_EFORMAT when an array is
   missing or shapes disagree. */
mfm_status mfm_mfile_factors(const mfm_mfile *f, const mfm_mfile_names *names,
                             mfm_factors *out, mfm_err *err);

/* CRC-32 (zlib's polynomial) of n bytes continuing from crc (0 to start);
   exposed for tests and tools. */
uint32_t mfm_crc32(uint32_t crc, const void *data, size_t n);

#endif
