/* The model file: writer and validating reader.  Layout in
   docs/model-file.md; every multi-byte field is little-endian and written
   byte by byte, so the code reads the same on any host, and the arrays
   are stored in host order, which the check below pins to little-endian. */
#include "moonfm/mfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "moonfm/alloc.h"
#include "moonfm/fileio.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
/* The model file stores arrays in host order. */
#error "big-endian hosts need byte swapping in mfile.c"
#endif

#define NAME_MAX_LEN 48
#define TRUNC_HINT "the file is truncated or not a moonfm model"

/* ---- little-endian fields ------------------------------------------ */

static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static uint64_t align_up(uint64_t x) {
  return (x + (MFM_MFILE_ALIGN - 1)) & ~(uint64_t)(MFM_MFILE_ALIGN - 1);
}

uint32_t mfm_crc32(uint32_t crc, const void *data, size_t n) {
  const unsigned char *p = data;
  /* crc32_z takes z_size_t; feed in 1 GiB pieces to stay portable. */
  while (n > 0) {
    size_t step = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
    crc = (uint32_t)crc32_z(crc, p, (z_size_t)step);
    p += step;
    n -= step;
  }
  return crc;
}

/* Bytes of rows x cols elements of dtype t in *nbytes; 0 on overflow or a
   negative shape. */
static int array_bytes(mfm_dtype t, int64_t rows, int64_t cols,
                       uint64_t *nbytes) {
  uint64_t sz = mfm_dtype_size(t);
  if (sz == 0 || rows < 0 || cols < 0) return 0;
  uint64_t r = (uint64_t)rows, c = (uint64_t)cols;
  if (c != 0 && r > UINT64_MAX / c) return 0;
  uint64_t e = r * c;
  if (sz != 0 && e > (UINT64_MAX / 2) / sz) return 0;
  *nbytes = e * sz;
  return 1;
}

/* ---- writer ---------------------------------------------------------- */

typedef struct writer {
  mfm_atomic_file *f;
  uint32_t crc;
} writer;

static mfm_status put(writer *w, const void *p, size_t n, mfm_err *err) {
  if (n == 0) return MFM_OK;
  w->crc = mfm_crc32(w->crc, p, n);
  return mfm_atomic_write(w->f, p, n, err);
}

static mfm_status pad_to(writer *w, uint64_t target, mfm_err *err) {
  static const unsigned char zeros[MFM_MFILE_ALIGN];
  uint64_t at = mfm_atomic_size(w->f);
  while (at < target) {
    size_t n = (size_t)(target - at);
    if (n > sizeof zeros) n = sizeof zeros;
    mfm_status st = put(w, zeros, n, err);
    if (st != MFM_OK) return st;
    at += n;
  }
  return MFM_OK;
}

/* The place of the first value of n floats that is not finite, or -1.
   A model with a NaN or an infinity in it scores nothing (the server
   would answer null), so it is neither written nor read.  The exponent
   bits all set mark both; OR-ed over a block of integers, which the
   compiler vectorizes (a float sum could not be reordered). */
static int64_t first_nonfinite(const unsigned char *p, int64_t n) {
  const uint32_t e = 0x7f800000u;
  for (int64_t a = 0; a < n; a += 4096) {
    int64_t b = n - a < 4096 ? n : a + 4096;
    uint32_t any = 0, u;
    for (int64_t i = a; i < b; i++) {
      memcpy(&u, p + 4 * i, 4);
      any |= (u & e) == e;
    }
    if (!any) continue;
    for (int64_t i = a; i < b; i++) {
      memcpy(&u, p + 4 * i, 4);
      if ((u & e) == e) return i;
    }
  }
  return -1;
}

static mfm_status check_arrays(const char *path, const mfm_array *a, int n,
                               mfm_err *err) {
  for (int i = 0; i < n; i++) {
    size_t len = strnlen(a[i].name, NAME_MAX_LEN);
    uint64_t nb;
    if (len == 0 || len >= NAME_MAX_LEN)
      return mfm_err_set(err, MFM_EINVAL,
                         "%s: array %d: the name must have 1 to %d bytes",
                         path, i + 1, NAME_MAX_LEN - 1);
    for (int j = 0; j < i; j++)
      if (strcmp(a[i].name, a[j].name) == 0)
        return mfm_err_set(err, MFM_EINVAL, "%s: array '%s' appears twice",
                           path, a[i].name);
    if (mfm_dtype_size(a[i].dtype) == 0)
      return mfm_err_set(err, MFM_EINVAL, "%s: array '%s': unknown dtype %d",
                         path, a[i].name, (int)a[i].dtype);
    if (!array_bytes(a[i].dtype, a[i].rows, a[i].cols, &nb))
      return mfm_err_set(err, MFM_EINVAL,
                         "%s: array '%s': bad shape %lld x %lld", path,
                         a[i].name, (long long)a[i].rows,
                         (long long)a[i].cols);
    if (nb > 0 && a[i].data == NULL)
      return mfm_err_set(err, MFM_EINVAL, "%s: array '%s' has no data", path,
                         a[i].name);
    int64_t bad = a[i].dtype == MFM_F32 && nb > 0
                      ? first_nonfinite(a[i].data, (int64_t)(nb / 4))
                      : -1;
    if (bad >= 0)
      return mfm_err_set(err, MFM_EINVAL,
                         "%s: not written: array '%s' holds a value that is "
                         "not finite (row %lld), so the training diverged; "
                         "lower learning_rate (alpha for ALS) or check the "
                         "weights of the data",
                         path, a[i].name,
                         (long long)(a[i].cols ? bad / a[i].cols : bad));
  }
  return MFM_OK;
}

mfm_status mfm_mfile_write(const char *path, uint32_t flags,
                           const char *header, size_t header_len,
                           const mfm_array *arrays, int n, mfm_err *err) {
  if (!path || !*path)
    return mfm_err_set(err, MFM_EINVAL, "model file: empty path");
  if (flags & ~MFM_MFILE_KNOWN_FLAGS)
    return mfm_err_set(err, MFM_EINVAL, "%s: unknown flags 0x%x", path,
                       (unsigned)flags);
  if (header_len > MFM_MFILE_MAX_HEADER || (header_len > 0 && !header))
    return mfm_err_set(err, MFM_EINVAL,
                       "%s: the JSON header must have at most %u bytes", path,
                       MFM_MFILE_MAX_HEADER);
  if (n < 0 || n > MFM_MFILE_MAX_ARRAYS || (n > 0 && !arrays))
    return mfm_err_set(err, MFM_EINVAL, "%s: %d arrays (at most %d)", path,
                       n, MFM_MFILE_MAX_ARRAYS);
  mfm_status st = check_arrays(path, arrays, n, err);
  if (st != MFM_OK) return st;

  /* Layout first, so the directory can be streamed before the data. */
  uint64_t dir_off = align_up(MFM_MFILE_PREAMBLE + (uint64_t)header_len);
  uint64_t at = align_up(dir_off + (uint64_t)n * MFM_MFILE_ENTRY);
  unsigned char *dir = NULL;
  if (n > 0) {
    dir = mfm_calloc((size_t)n, MFM_MFILE_ENTRY);
    if (!dir)
      return mfm_err_set(err, MFM_ENOMEM, "%s: out of memory", path);
  }
  for (int i = 0; i < n; i++) {
    unsigned char *e = dir + (size_t)i * MFM_MFILE_ENTRY;
    uint64_t nb = 0;
    array_bytes(arrays[i].dtype, arrays[i].rows, arrays[i].cols, &nb);
    memcpy(e, arrays[i].name, strlen(arrays[i].name));
    put32(e + 48, (uint32_t)arrays[i].dtype);
    put64(e + 56, (uint64_t)arrays[i].rows);
    put64(e + 64, (uint64_t)arrays[i].cols);
    put64(e + 72, at);
    put64(e + 80, nb);
    at = align_up(at + nb);
  }
  uint64_t file_size = at + MFM_MFILE_TRAILER;

  unsigned char pre[MFM_MFILE_PREAMBLE] = {0};
  memcpy(pre, MFM_MFILE_MAGIC, 8);
  put32(pre + 8, MFM_MFILE_VERSION);
  put32(pre + 12, flags);
  put64(pre + 16, file_size);
  put64(pre + 24, MFM_MFILE_PREAMBLE);
  put64(pre + 32, header_len);
  put64(pre + 40, dir_off);
  put32(pre + 48, (uint32_t)n);
  put32(pre + 52, MFM_MFILE_ENTRY);

  writer w = {NULL, 0};
  st = mfm_atomic_open(path, &w.f, err);
  if (st != MFM_OK) goto done;
  st = put(&w, pre, sizeof pre, err);
  if (st == MFM_OK) st = put(&w, header, header_len, err);
  if (st == MFM_OK) st = pad_to(&w, dir_off, err);
  if (st == MFM_OK) st = put(&w, dir, (size_t)n * MFM_MFILE_ENTRY, err);
  for (int i = 0; i < n && st == MFM_OK; i++) {
    const unsigned char *e = dir + (size_t)i * MFM_MFILE_ENTRY;
    st = pad_to(&w, get64(e + 72), err);
    if (st == MFM_OK) st = put(&w, arrays[i].data, (size_t)get64(e + 80), err);
  }
  if (st == MFM_OK) st = pad_to(&w, at, err);
  if (st == MFM_OK) {
    unsigned char tr[MFM_MFILE_TRAILER] = {0};
    put32(tr, w.crc);
    memcpy(tr + 8, MFM_MFILE_END_MAGIC, 8);
    st = mfm_atomic_write(w.f, tr, sizeof tr, err);
  }
  if (st == MFM_OK && mfm_atomic_size(w.f) != file_size)
    st = mfm_err_set(err, MFM_EIO, "%s: wrote %llu bytes, expected %llu",
                     path, (unsigned long long)mfm_atomic_size(w.f),
                     (unsigned long long)file_size);
  if (st == MFM_OK) {
    st = mfm_atomic_commit(w.f, err);
  } else {
    mfm_atomic_abort(w.f);
  }
done:
  mfm_free(dir);
  return st;
}

/* ---- reader ---------------------------------------------------------- */

typedef struct entry {
  char name[NAME_MAX_LEN];
  mfm_dtype dtype;
  int64_t rows, cols;
  uint64_t offset, nbytes;
} entry;

struct mfm_mfile {
  char *path;
  mfm_mfile_mode mode;
  unsigned char *base; /* the whole file, 64-byte aligned */
  void *raw;           /* MFM_MFILE_READ: the allocation holding base */
  uint64_t size;
  uint32_t version, flags, crc;
  char *header;        /* copy, NUL-terminated */
  size_t header_len;
  int n;
  entry *e;
};

static char *dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = mfm_malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* Reads the whole of fd (size bytes) into f->base. */
static mfm_status read_all(mfm_mfile *f, int fd, mfm_err *err) {
  /* Not mfm_alloc_aligned: its zero-filling touches every page once more
     before read() does, which costs as much as the read itself. */
  if (f->size > SIZE_MAX - MFM_MFILE_ALIGN) f->raw = NULL;
  else f->raw = mfm_malloc((size_t)f->size + MFM_MFILE_ALIGN - 1);
  if (f->raw)
    f->base = (unsigned char *)(((uintptr_t)f->raw + MFM_MFILE_ALIGN - 1) &
                                ~(uintptr_t)(MFM_MFILE_ALIGN - 1));
  if (!f->raw)
    return mfm_err_set(err, MFM_ENOMEM, "%s: out of memory (%llu bytes)",
                       f->path, (unsigned long long)f->size);
  uint64_t got = 0;
  while (got < f->size) {
    ssize_t r = read(fd, f->base + got, (size_t)(f->size - got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return mfm_err_set(err, MFM_EIO, "%s: %s", f->path, strerror(errno));
    }
    if (r == 0)
      return mfm_err_set(err, MFM_EFORMAT,
                         "%s: the file shrank while being read", f->path);
    got += (uint64_t)r;
  }
  return MFM_OK;
}

static mfm_status bad(const mfm_mfile *f, mfm_err *err, const char *what) {
  return mfm_err_set(err, MFM_EFORMAT, "%s: %s", f->path, what);
}

/* Validates the preamble, sizes, trailer and checksum, then the
   directory: the order makes a truncated or bit-flipped file fail on the
   most telling check. */
static mfm_status validate(mfm_mfile *f, mfm_err *err) {
  const unsigned char *b = f->base;
  uint64_t size = f->size;
  char m[160];
  if (size < 8 || memcmp(b, MFM_MFILE_MAGIC, 8) != 0) {
    if (size < 8 && memcmp(b, MFM_MFILE_MAGIC, (size_t)size) == 0)
      return mfm_err_set(err, MFM_EFORMAT,
                         "%s: only %llu bytes, shorter than the magic "
                         "number; " TRUNC_HINT,
                         f->path, (unsigned long long)size);
    if (size >= 6 && memcmp(b, MFM_MFILE_MAGIC, 6) == 0)
      return bad(f, err, "damaged magic number; not a moonfm model file");
    return bad(f, err, "not a moonfm model file (bad magic number)");
  }
  if (size < 12)
    return mfm_err_set(err, MFM_EFORMAT,
                       "%s: only %llu bytes, the format version is "
                       "missing; " TRUNC_HINT,
                       f->path, (unsigned long long)size);
  f->version = get32(b + 8);
  if (f->version != MFM_MFILE_VERSION)
    return mfm_err_set(err, MFM_EFORMAT,
                       "%s: unsupported format version %u (this moonfm "
                       "reads version %u); save the model again with a "
                       "matching moonfm",
                       f->path, (unsigned)f->version,
                       (unsigned)MFM_MFILE_VERSION);
  if (size < MFM_MFILE_PREAMBLE + MFM_MFILE_TRAILER)
    return mfm_err_set(err, MFM_EFORMAT,
                       "%s: only %llu bytes, shorter than the fixed "
                       "preamble and trailer (%d); " TRUNC_HINT,
                       f->path, (unsigned long long)size,
                       MFM_MFILE_PREAMBLE + MFM_MFILE_TRAILER);
  f->flags = get32(b + 12);
  uint64_t want = get64(b + 16);
  if (want != size)
    return mfm_err_set(err, MFM_EFORMAT,
                       "%s: the file has %llu bytes but its preamble says "
                       "%llu; %s",
                       f->path, (unsigned long long)size,
                       (unsigned long long)want,
                       size < want ? TRUNC_HINT
                                   : "data was appended or the file is "
                                     "corrupt");
  if (memcmp(b + size - 8, MFM_MFILE_END_MAGIC, 8) != 0)
    return bad(f, err, "the end marker is missing; " TRUNC_HINT);
  uint32_t stored = get32(b + size - MFM_MFILE_TRAILER);
  f->crc = mfm_crc32(0, b, (size_t)(size - MFM_MFILE_TRAILER));
  if (stored != f->crc) {
    snprintf(m, sizeof m,
             "checksum mismatch (stored %08x, computed %08x); the file is "
             "corrupt", (unsigned)stored, (unsigned)f->crc);
    return bad(f, err, m);
  }
  /* From here the bytes are as written, but a file made by another tool
     can still lie: check every field before using it. */
  if (f->flags & ~MFM_MFILE_KNOWN_FLAGS) {
    snprintf(m, sizeof m, "unknown flags 0x%x in the preamble",
             (unsigned)f->flags);
    return bad(f, err, m);
  }
  uint64_t end = size - MFM_MFILE_TRAILER; /* arrays end before this */
  uint64_t hoff = get64(b + 24), hlen = get64(b + 32), doff = get64(b + 40);
  uint32_t n = get32(b + 48), esz = get32(b + 52);
  if (hoff != MFM_MFILE_PREAMBLE)
    return bad(f, err, "header offset is not 64");
  if (hlen > MFM_MFILE_MAX_HEADER || hoff + hlen > end) {
    snprintf(m, sizeof m,
             "the JSON header (%llu bytes at offset 64) does not fit in the "
             "file", (unsigned long long)hlen);
    return bad(f, err, m);
  }
  if (doff != align_up(hoff + hlen))
    return bad(f, err, "directory offset does not follow the header");
  if (esz != MFM_MFILE_ENTRY)
    return bad(f, err, "directory entry size is not 96");
  if (n > MFM_MFILE_MAX_ARRAYS || doff + (uint64_t)n * esz > end) {
    snprintf(m, sizeof m, "directory of %u arrays does not fit in the file",
             (unsigned)n);
    return bad(f, err, m);
  }
  if (get64(b + 56) != 0 || get32(b + end + 4) != 0)
    return bad(f, err, "reserved preamble or trailer fields are not zero");

  f->header = mfm_malloc((size_t)hlen + 1);
  f->e = mfm_calloc(n ? n : 1, sizeof *f->e);
  if (!f->header || !f->e)
    return mfm_err_set(err, MFM_ENOMEM, "%s: out of memory", f->path);
  memcpy(f->header, b + hoff, (size_t)hlen);
  f->header[hlen] = '\0';
  f->header_len = (size_t)hlen;
  f->n = (int)n;

  uint64_t prev_end = align_up(doff + (uint64_t)n * esz);
  for (uint32_t i = 0; i < n; i++) {
    const unsigned char *e = b + doff + (uint64_t)i * esz;
    entry *x = &f->e[i];
    size_t len = strnlen((const char *)e, NAME_MAX_LEN);
    if (len == 0 || len == NAME_MAX_LEN)
      return mfm_err_set(err, MFM_EFORMAT,
                         "%s: array %u: the name is empty or not "
                         "NUL-terminated",
                         f->path, (unsigned)i + 1);
    memcpy(x->name, e, len);
    x->name[len] = '\0';
    for (size_t j = len; j < NAME_MAX_LEN; j++)
      if (e[j] != 0)
        return mfm_err_set(err, MFM_EFORMAT,
                           "%s: array '%s': bytes after the name are not "
                           "zero", f->path, x->name);
    for (uint32_t j = 0; j < i; j++)
      if (strcmp(f->e[j].name, x->name) == 0)
        return mfm_err_set(err, MFM_EFORMAT, "%s: array '%s' appears twice",
                           f->path, x->name);
    uint32_t dt = get32(e + 48);
    x->dtype = (mfm_dtype)dt;
    x->rows = (int64_t)get64(e + 56);
    x->cols = (int64_t)get64(e + 64);
    x->offset = get64(e + 72);
    x->nbytes = get64(e + 80);
    uint64_t nb;
    if (dt > 255 || mfm_dtype_size((mfm_dtype)dt) == 0)
      return mfm_err_set(err, MFM_EFORMAT, "%s: array '%s': unknown dtype %u",
                         f->path, x->name, (unsigned)dt);
    if (get32(e + 52) != 0 || get64(e + 88) != 0)
      return mfm_err_set(err, MFM_EFORMAT,
                         "%s: array '%s': reserved fields are not zero",
                         f->path, x->name);
    if (!array_bytes(x->dtype, x->rows, x->cols, &nb) || nb != x->nbytes)
      return mfm_err_set(err, MFM_EFORMAT,
                         "%s: array '%s': shape %lld x %lld does not match "
                         "its size of %llu bytes",
                         f->path, x->name, (long long)x->rows,
                         (long long)x->cols, (unsigned long long)x->nbytes);
    if (x->offset % MFM_MFILE_ALIGN != 0 || x->offset < prev_end)
      return mfm_err_set(err, MFM_EFORMAT,
                         "%s: array '%s': offset %llu is misaligned or "
                         "overlaps what precedes it",
                         f->path, x->name, (unsigned long long)x->offset);
    if (x->offset > end || x->nbytes > end - x->offset)
      return mfm_err_set(err, MFM_EFORMAT,
                         "%s: array '%s' runs past the end of the file "
                         "(offset %llu + %llu > %llu); " TRUNC_HINT,
                         f->path, x->name, (unsigned long long)x->offset,
                         (unsigned long long)x->nbytes,
                         (unsigned long long)end);
    prev_end = x->offset + x->nbytes;
    int64_t bad = x->dtype == MFM_F32
                      ? first_nonfinite(b + x->offset, (int64_t)(x->nbytes / 4))
                      : -1;
    if (bad >= 0)
      return mfm_err_set(err, MFM_EFORMAT,
                         "%s: array '%s' holds a value that is not finite "
                         "(row %lld): the model is unusable (saved from a "
                         "training that diverged, or damaged)",
                         f->path, x->name,
                         (long long)(x->cols ? bad / x->cols : bad));
  }
  return MFM_OK;
}

mfm_status mfm_mfile_open(const char *path, mfm_mfile_mode mode,
                          mfm_mfile **out, mfm_err *err) {
  *out = NULL;
  if (mode != MFM_MFILE_READ && mode != MFM_MFILE_MAP)
    return mfm_err_set(err, MFM_EINVAL, "%s: unknown open mode %d", path,
                       (int)mode);
  mfm_mfile *f = mfm_calloc(1, sizeof *f);
  if (!f) return mfm_err_set(err, MFM_ENOMEM, "%s: out of memory", path);
  f->mode = mode;
  f->path = dupstr(path);
  if (!f->path) {
    mfm_free(f);
    return mfm_err_set(err, MFM_ENOMEM, "%s: out of memory", path);
  }
  mfm_status st = MFM_OK;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat sb;
  if (fd < 0) {
    st = mfm_err_set(err, MFM_EIO, "%s: %s", path, strerror(errno));
    goto fail;
  }
  if (fstat(fd, &sb) != 0) {
    st = mfm_err_set(err, MFM_EIO, "%s: %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(sb.st_mode)) {
    st = mfm_err_set(err, MFM_EFORMAT, "%s: not a regular file", path);
    goto fail;
  }
  f->size = (uint64_t)sb.st_size;
  if (f->size == 0) {
    st = mfm_err_set(err, MFM_EFORMAT, "%s: the file is empty; " TRUNC_HINT,
                     path);
    goto fail;
  }
  if ((uint64_t)(size_t)f->size != f->size) {
    st = mfm_err_set(err, MFM_ENOMEM, "%s: too large for this machine", path);
    goto fail;
  }
  if (mode == MFM_MFILE_MAP) {
    void *p = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      st = mfm_err_set(err, MFM_EIO, "%s: cannot map: %s", path,
                       strerror(errno));
      goto fail;
    }
    f->base = p;
  } else {
    st = read_all(f, fd, err);
    if (st != MFM_OK) goto fail;
  }
  close(fd);
  fd = -1;
  st = validate(f, err);
  if (st != MFM_OK) goto fail;
  *out = f;
  return MFM_OK;
fail:
  if (fd >= 0) close(fd);
  mfm_mfile_free(f);
  return st;
}

void mfm_mfile_free(mfm_mfile *f) {
  if (!f) return;
  if (f->mode == MFM_MFILE_MAP && f->base)
    munmap(f->base, (size_t)f->size);
  mfm_free(f->raw);
  mfm_free(f->header);
  mfm_free(f->e);
  mfm_free(f->path);
  mfm_free(f);
}

uint32_t mfm_mfile_version(const mfm_mfile *f) { return f->version; }
uint32_t mfm_mfile_flags(const mfm_mfile *f) { return f->flags; }
uint64_t mfm_mfile_size(const mfm_mfile *f) { return f->size; }
uint32_t mfm_mfile_checksum(const mfm_mfile *f) { return f->crc; }
const char *mfm_mfile_path(const mfm_mfile *f) { return f->path; }

const char *mfm_mfile_header(const mfm_mfile *f, size_t *len) {
  if (len) *len = f->header_len;
  return f->header;
}

int mfm_mfile_count(const mfm_mfile *f) { return f->n; }

void mfm_mfile_array(const mfm_mfile *f, int i, mfm_array *out) {
  const entry *x = &f->e[i];
  memset(out, 0, sizeof *out);
  memcpy(out->name, x->name, sizeof out->name);
  out->dtype = x->dtype;
  out->rows = x->rows;
  out->cols = x->cols;
  out->data = f->base + x->offset;
}

int mfm_mfile_find(const mfm_mfile *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->e[i].name, name) == 0) return i;
  return -1;
}

static const char *dtype_name(mfm_dtype t) {
  switch (t) {
  case MFM_F32: return "f32";
  case MFM_I32: return "i32";
  case MFM_I64: return "i64";
  case MFM_U8: return "u8";
  case MFM_F64: return "f64";
  case MFM_U64: return "u64";
  }
  return "?";
}

mfm_status mfm_mfile_fill(const mfm_mfile *f, const mfm_array *dst, int n,
                          mfm_err *err) {
  for (int i = 0; i < n; i++) {
    int j = mfm_mfile_find(f, dst[i].name);
    if (j < 0)
      return mfm_err_set(err, MFM_EFORMAT,
                         "%s: array '%s' is missing; the file holds another "
                         "kind of model", f->path, dst[i].name);
    const entry *x = &f->e[j];
    if (x->dtype != dst[i].dtype || x->rows != dst[i].rows ||
        x->cols != dst[i].cols)
      return mfm_err_set(err, MFM_EFORMAT,
                         "%s: array '%s' is %s %lld x %lld in the file but "
                         "the model expects %s %lld x %lld",
                         f->path, x->name, dtype_name(x->dtype),
                         (long long)x->rows, (long long)x->cols,
                         dtype_name(dst[i].dtype), (long long)dst[i].rows,
                         (long long)dst[i].cols);
    if (x->nbytes > 0) memcpy(dst[i].data, f->base + x->offset,
                              (size_t)x->nbytes);
  }
  return MFM_OK;
}

mfm_mfile_names mfm_mfile_names_default(void) {
  mfm_mfile_names n = {"user_factors", "item_factors", "user_bias",
                       "item_bias"};
  return n;
}

/* Index of the F32 array `name` with `rows` rows (-1: any) and `cols`
   columns (-1: any). */
static mfm_status need(const mfm_mfile *f, const char *name, int64_t rows,
                       int64_t cols, const entry **out, mfm_err *err) {
  int j = mfm_mfile_find(f, name);
  if (j < 0)
    return mfm_err_set(err, MFM_EFORMAT, "%s: array '%s' is missing",
                       f->path, name);
  const entry *x = &f->e[j];
  if (x->dtype != MFM_F32 || (rows >= 0 && x->rows != rows) ||
      (cols >= 0 && x->cols != cols) || x->rows > INT32_MAX ||
      x->cols > INT32_MAX) {
    /* -1 is "any": said in words, never as a count. */
    char nr[32] = "any number of", nc[32] = "any number of";
    if (rows >= 0) snprintf(nr, sizeof nr, "%lld", (long long)rows);
    if (cols >= 0) snprintf(nc, sizeof nc, "%lld", (long long)cols);
    return mfm_err_set(err, MFM_EFORMAT,
                       "%s: array '%s' is %s %lld x %lld; expected f32 with "
                       "%s rows and %s columns",
                       f->path, name, dtype_name(x->dtype),
                       (long long)x->rows, (long long)x->cols, nr, nc);
  }
  *out = x;
  return MFM_OK;
}

mfm_status mfm_mfile_factors(const mfm_mfile *f, const mfm_mfile_names *names,
                             mfm_factors *out, mfm_err *err) {
  mfm_mfile_names d = mfm_mfile_names_default();
  if (!names) names = &d;
  const entry *u = NULL, *it = NULL, *ub = NULL, *ib = NULL;
  mfm_status st = need(f, names->user, -1, -1, &u, err);
  if (st == MFM_OK) st = need(f, names->item, -1, u->cols, &it, err);
  if (st == MFM_OK && names->user_bias &&
      mfm_mfile_find(f, names->user_bias) >= 0)
    st = need(f, names->user_bias, u->rows, 1, &ub, err);
  if (st == MFM_OK && names->item_bias &&
      mfm_mfile_find(f, names->item_bias) >= 0)
    st = need(f, names->item_bias, it->rows, 1, &ib, err);
  if (st != MFM_OK) return st;
  memset(out, 0, sizeof *out);
  out->n_users = (int32_t)u->rows;
  out->n_items = (int32_t)it->rows;
  out->k = (int32_t)u->cols;
  out->user = (const float *)(f->base + u->offset);
  out->item = (const float *)(f->base + it->offset);
  out->ld_user = u->cols;
  out->ld_item = it->cols;
  out->user_bias = ub ? (const float *)(f->base + ub->offset) : NULL;
  out->item_bias = ib ? (const float *)(f->base + ib->offset) : NULL;
  return MFM_OK;
}
