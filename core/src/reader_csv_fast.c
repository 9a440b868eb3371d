/* The plain CSV row, read 8 bytes at a time: unquoted fields with no
   spaces, tabs or control bytes, at least as many as the last column
   used, then '\n' or "\r\n".  Integer ids of up to 8 digits are read as
   numbers and looked up in the reader's direct cache; other ids go to
   the id maps.  Any other row, and any row whose weight is not simply a
   number, goes back to the general parser, which gives the same result
   or the message. */
#include <math.h>
#include <string.h>

#include "reader_impl.h"

/* x86-64 always has SSE2: 16 bytes compared at once.  Elsewhere the
   8-byte tricks below do the same work. */
#if defined(__SSE2__)
#include <emmintrin.h>
#define FAST_SSE2 1
#else
#define FAST_SSE2 0
#endif

#define ONES 0x0101010101010101ull
#define HIGH 0x8080808080808080ull

/* The byte tricks below number bytes from the low end of a word. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FAST_OK 1
#else
#define FAST_OK 0
#endif

static inline uint64_t load8(const char *p) {
  uint64_t w;
  memcpy(&w, p, 8);
  return w;
}

/* Index of the lowest byte of m with its high bit set (m != 0). */
static inline int low_byte(uint64_t m) {
#if defined(__GNUC__)
  return __builtin_ctzll(m) >> 3;
#else
  int k = 0;
  while (!(m & 0x80)) {
    m >>= 8;
    k++;
  }
  return k;
#endif
}

/* High bits of the bytes of w that end a field's scan: the delimiter, or
   any byte below '#' (NUL, tab, CR, LF, space, '!', '"').  A plain field
   has none of those ('!' only costs a trip through the general parser).
   Borrows only run upwards, so the lowest flagged byte is always a real
   one; bytes above it may be flagged falsely, and are never looked at. */
static inline uint64_t stops(uint64_t w, uint64_t dv) {
  uint64_t x = w ^ dv;
  return (((w - ONES * 0x23) & ~w) | ((x - ONES) & ~x)) & HIGH;
}

/* The first stop byte at or after q (the block ends with '\n', and the
   buffer has MFM_READ_PAD readable bytes after it). */
static inline const char *field_end(const char *q, uint64_t dv) {
  for (;;) {
    uint64_t m = stops(load8(q), dv);
    if (m) return q + low_byte(m);
    q += 8;
  }
}

/* The value of a canonical decimal of 1..8 digits (no sign, no leading
   zero) at s, or -1.  Larger ids never fit the direct cache anyway. */
static inline int64_t small_uint(const char *s, size_t n) {
  if (n - 1 >= 8) return -1;
  uint64_t keep = ~0ull >> (64 - 8 * n);
  uint64_t w = load8(s);
  if ((w & 0xFF) == '0' && n > 1) return -1;
  /* A byte is not a digit when it has its high bit set, or gets it from
     x - '0' (x below '0') or from x + 0x46 (x above '9').  A borrow or
     carry only reaches higher bytes from a byte already caught, so a
     false alarm inside keep always comes with a true one. */
  uint64_t bad = (w | (w - ONES * 0x30) | (w + ONES * 0x46)) & HIGH;
  if (bad & keep) return -1;
  /* Digits to the top (leading zeros below), then pairs, quads, all. */
  uint64_t d = (w & 0x0F0F0F0F0F0F0F0Full & keep) << (8 * (8 - n));
  d = (d * 10 + (d >> 8)) & 0x00FF00FF00FF00FFull;
  d = (d * 100 + (d >> 16)) & 0x0000FFFF0000FFFFull;
  d = (d * 10000 + (d >> 32)) & 0xFFFFFFFFull;
  return (int64_t)d;
}

/* a[0, n) == b[0, n) for n <= MFM_LAST_U_MAX; both may be read up to
   7 bytes past n (b is the reader's last-user copy). */
static inline int same_short(const char *a, const char *b, size_t n) {
  size_t k = 0;
  for (; k + 8 <= n; k += 8)
    if (load8(a + k) != load8(b + k)) return 0;
  if (k == n) return 1;
  uint64_t keep = ((uint64_t)1 << (8 * (n - k))) - 1;
  return ((load8(a + k) ^ load8(b + k)) & keep) == 0;
}

void mfm_reader_csv_fast_layout(mfm_reader *r) {
  r->fast_cols = 0;
  memset(r->role, 0, sizeof r->role);
  if (!FAST_OK || r->delim == ' ' || r->delim == ':' ||
      r->max_pos > MFM_FAST_MAX_COLS)
    return;
  for (int c = MFM_COL_USER; c <= MFM_COL_WEIGHT; c++) {
    int k = r->pos[c];
    if (!k) continue;
    if (r->role[k - 1]) return; /* one field in two roles: rare, general */
    r->role[k - 1] = (unsigned char)(c + 1);
  }
  r->fast_cols = r->max_pos;
}

/* A field: where it starts and how long it is. */
typedef struct span {
  const char *p;
  size_t n;
} span;

/* Splits the row at p whatever the layout: the fields of the user, item
   and weight columns into f[MFM_COL_* + 1] (f[0] takes the others).
   Returns the row's '\n', or NULL when the row is not plain. */
static const char *split_any(const mfm_reader *r, const char *p,
                             const char *end, uint64_t dv, span *f) {
  const char *q = p;
  for (int k = 0;;) {
    const char *s = q;
    q = field_end(q, dv);
    span *t = &f[r->role[k]];
    t->p = s;
    t->n = (size_t)(q - s);
    if (++k == r->fast_cols) break;
    if (*q != r->delim) return NULL;
    q++;
  }
  if (*q == r->delim) return memchr(q, '\n', (size_t)(end - q));
  if (*q == '\r' && q[1] == '\n') return q + 1;
  return *q == '\n' ? q : NULL;
}

/* The usual layout (user, item[, weight] and no more columns used) with
   every field shorter than 8 bytes: one word load per field, no loops.
   NULL when the row is anything else (split_any then looks). */
#if !FAST_SSE2
static inline const char *split_short(const char *p, const char *end,
                                      uint64_t dv, char delim, int has_w,
                                      span *f) {
  uint64_t m = stops(load8(p), dv);
  if (!m) return NULL;
  const char *q = p + low_byte(m);
  f[MFM_COL_USER + 1].p = p;
  f[MFM_COL_USER + 1].n = (size_t)(q - p);
  if (*q != delim) return NULL;
  p = q + 1;
  m = stops(load8(p), dv);
  if (!m) return NULL;
  q = p + low_byte(m);
  f[MFM_COL_ITEM + 1].p = p;
  f[MFM_COL_ITEM + 1].n = (size_t)(q - p);
  if (has_w) {
    if (*q != delim) return NULL;
    p = q + 1;
    m = stops(load8(p), dv);
    if (!m) return NULL;
    q = p + low_byte(m);
    f[MFM_COL_WEIGHT + 1].p = p;
    f[MFM_COL_WEIGHT + 1].n = (size_t)(q - p);
  }
  if (*q == '\n') return q;
  if (*q == delim) return memchr(q, '\n', (size_t)(end - q));
  if (*q == '\r' && q[1] == '\n') return q + 1;
  return NULL;
}
#endif

#if FAST_SSE2
/* Bit k set when byte k of the 32 at p ends a field: the delimiter d, or
   a byte below '#' (lo holds '"' = 0x22; min(x, lo) == x means x <= lo,
   unsigned, so UTF-8 bytes pass). */
static inline uint32_t stops32(const char *p, __m128i d, __m128i lo) {
  __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
  __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
  a = _mm_or_si128(_mm_cmpeq_epi8(a, d), _mm_cmpeq_epi8(_mm_min_epu8(a, lo), a));
  b = _mm_or_si128(_mm_cmpeq_epi8(b, d), _mm_cmpeq_epi8(_mm_min_epu8(b, lo), b));
  return (uint32_t)_mm_movemask_epi8(a) |
         (uint32_t)_mm_movemask_epi8(b) << 16;
}

static inline unsigned low_bit(uint32_t m) {
#if defined(__GNUC__)
  return (unsigned)__builtin_ctz(m);
#else
  unsigned k = 0;
  while (!(m & 1)) {
    m >>= 1;
    k++;
  }
  return k;
#endif
}

/* split_short for rows whose used fields end within 32 bytes: every
   stop byte of the window at once, then the fields one bit each. */
static inline const char *split_win(const char *p, const char *end,
                                    __m128i d, __m128i lo, char delim,
                                    int has_w, span *f) {
  uint32_t m = stops32(p, d, lo);
  if (!m) return NULL;
  unsigned a = low_bit(m);
  if (p[a] != delim) return NULL;
  m &= m - 1;
  if (!m) return NULL;
  unsigned b = low_bit(m);
  f[MFM_COL_USER + 1].p = p;
  f[MFM_COL_USER + 1].n = a;
  f[MFM_COL_ITEM + 1].p = p + a + 1;
  f[MFM_COL_ITEM + 1].n = b - a - 1;
  const char *q = p + b;
  if (has_w) {
    if (*q != delim) return NULL;
    m &= m - 1;
    if (!m) return NULL;
    unsigned e = low_bit(m);
    f[MFM_COL_WEIGHT + 1].p = q + 1;
    f[MFM_COL_WEIGHT + 1].n = e - b - 1;
    q = p + e;
  }
  if (*q == '\n') return q;
  if (*q == delim) return memchr(q, '\n', (size_t)(end - q));
  if (*q == '\r' && q[1] == '\n') return q + 1;
  return NULL;
}
#endif

mfm_status mfm_reader_csv_fast(mfm_reader *r, const char **pp,
                               const char *end, mfm_err *err) {
  const char *p = *pp;
  mfm_status st = MFM_OK;
  const char delim = r->delim;
  const uint64_t dv = ONES * (unsigned char)delim;
  const int nf = r->fast_cols, has_w = r->pos[MFM_COL_WEIGHT] != 0;
  const int usual = nf == 2 + has_w && r->role[0] == MFM_COL_USER + 1 &&
                    r->role[1] == MFM_COL_ITEM + 1;
  mfm_coo *c = &r->coo;
  int short_off = 0;
#if FAST_SSE2
  const __m128i vd = _mm_set1_epi8(delim), vlo = _mm_set1_epi8(0x22);
#endif
  if (!nf) return MFM_OK;
  while (p < end) {
    span f[MFM_N_COLS + 1];
    const char *q = NULL;
    if (usual && !short_off) {
#if FAST_SSE2
      q = split_win(p, end, vd, vlo, delim, has_w, f);
#else
      q = split_short(p, end, dv, delim, has_w, f);
#endif
      if (!q) short_off = 64; /* long fields: do not retry row by row */
    } else if (short_off) {
      short_off--;
    }
    if (!q && !(q = split_any(r, p, end, dv, f))) break;
    /* q is the row's '\n'. */
    const char *u = f[MFM_COL_USER + 1].p, *i = f[MFM_COL_ITEM + 1].p;
    size_t un = f[MFM_COL_USER + 1].n, in = f[MFM_COL_ITEM + 1].n;
    if (!un || !in) break;
    float w = r->o.default_weight;
    int wb = 1; /* w fits a byte weight */
    if (has_w) {
      const char *ws = f[MFM_COL_WEIGHT + 1].p;
      size_t wn = f[MFM_COL_WEIGHT + 1].n;
      if (wn == 1 && (unsigned)(ws[0] - '0') < 10) {
        w = (float)(ws[0] - '0'); /* counts and ratings: one digit */
      } else {
        double v;
        if (!mfm_parse_number(ws, wn, &v)) break;
        w = (float)v;
        if (!isfinite(w)) break;
        wb = mfm_weight_byte(w);
      }
    } else {
      wb = mfm_weight_byte(w);
    }
    r->line++;
    r->rep.rows++;
    int32_t ui, ii;
    int64_t v;
    if (r->last_u >= 0 && un == r->last_u_len &&
        same_short(u, r->last_u_id, un)) {
      ui = r->last_u;
    } else {
      v = small_uint(u, un);
      if (v >= 0 && (uint64_t)v < r->direct_n[0] && r->direct[0][v]) {
        ui = r->direct[0][v] - 1;
      } else if (v >= 0 && (uint64_t)v < r->direct_n[0] && r->complete[0] &&
                 r->grow_users &&
                 mfm_idmap_append_new(r->users, u, un, &ui, NULL) ==
                     MFM_OK) {
        r->direct[0][v] = ui + 1; /* new: no probe of the table now */
      } else {
        st = mfm_reader_lookup(r, 0, u, un, v, &ui, err);
        if (st != MFM_OK) break;
        if (ui < 0) goto emit; /* unknown user: emit counts it */
      }
      if (un <= MFM_LAST_U_MAX) {
        r->last_u = ui;
        r->last_u_len = un;
        for (size_t k = 0; k < un; k += 8) /* a word past un is fine */
          memcpy(r->last_u_id + k, u + k, 8);
      }
    }
    v = small_uint(i, in);
    if (v >= 0 && (uint64_t)v < r->direct_n[1] && r->direct[1][v]) {
      ii = r->direct[1][v] - 1;
    } else if (v < 0 && (ii = mfm_idmap_find_hashed(
                             r->items, i, in, mfm_hash_bytes(i, in))) >= 0) {
      /* a known id that is no small integer: straight to the table */
    } else if (v >= 0 && (uint64_t)v < r->direct_n[1] && r->complete[1] &&
               r->grow_items &&
               mfm_idmap_append_new(r->items, i, in, &ii, NULL) == MFM_OK) {
      r->direct[1][v] = ii + 1;
    } else {
      st = mfm_reader_lookup(r, 1, i, in, v, &ii, err);
      if (st != MFM_OK) break;
      if (ii < 0) goto emit;
    }
    if ((c->n == c->cap || (w != 1.0f && !c->vals && !(r->wcode && wb))) &&
        (st = mfm_reader_coo_room(r, w, err)) != MFM_OK)
      break;
    int64_t n = c->n; /* not reloaded after the byte store */
    c->rows[n] = ui;
    c->cols[n] = ii;
    if (c->vals) c->vals[n] = w;
    else if (r->wcode) r->wcode[n] = (unsigned char)w;
    c->n = n + 1;
    r->rep.kept++;
    p = q + 1;
    continue;
  emit:
    st = mfm_reader_emit(r, p, (size_t)(q - p), u, un, r->pos[MFM_COL_USER],
                         i, in, r->pos[MFM_COL_ITEM], w, err);
    if (st != MFM_OK) break;
    p = q + 1;
  }
  /* The row at p (if any) goes to the general parser. */
  *pp = p;
  return st;
}
