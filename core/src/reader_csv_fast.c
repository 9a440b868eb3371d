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
  if (n - 1 >= 8 || (s[0] == '0' && n > 1)) return -1;
  uint64_t keep = n == 8 ? ~0ull : ((uint64_t)1 << (8 * n)) - 1;
  uint64_t w = load8(s);
  /* A digit is 0x30..0x39: high nibble 3, low nibble + 6 below 16. */
  uint64_t bad = ((w & 0xF0F0F0F0F0F0F0F0ull) ^ (ONES * 0x30)) |
                 (((w & 0x0F0F0F0F0F0F0F0Full) + ONES * 6) &
                  0xF0F0F0F0F0F0F0F0ull);
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
  if (!FAST_OK || r->delim == ' ' || r->max_pos > MFM_FAST_MAX_COLS)
    return;
  for (int c = MFM_COL_USER; c <= MFM_COL_WEIGHT; c++) {
    int k = r->pos[c];
    if (!k) continue;
    if (r->role[k - 1]) return; /* one field in two roles: rare, general */
    r->role[k - 1] = (unsigned char)(c + 1);
  }
  r->fast_cols = r->max_pos;
}

mfm_status mfm_reader_csv_fast(mfm_reader *r, const char **pp,
                               const char *end, mfm_err *err) {
  const char *p = *pp;
  mfm_status st = MFM_OK;
  const char delim = r->delim;
  const uint64_t dv = ONES * (unsigned char)delim;
  const int nf = r->fast_cols, has_w = r->pos[MFM_COL_WEIGHT] != 0;
  mfm_coo *c = &r->coo;
  if (!nf) return MFM_OK;
  while (p < end) {
    /* Slot 0 takes the fields no column uses. */
    const char *f[MFM_N_COLS + 1];
    size_t fn[MFM_N_COLS + 1];
    const char *q = p;
    for (int k = 0;;) {
      const char *s = q;
      q = field_end(q, dv);
      unsigned role = r->role[k];
      f[role] = s;
      fn[role] = (size_t)(q - s);
      if (++k == nf) break;
      if (*q != delim) goto general;
      q++;
    }
    if (*q == delim) q = memchr(q, '\n', (size_t)(end - q));
    else if (*q == '\r' && q[1] == '\n') q++;
    else if (*q != '\n') goto general;
    /* q is the row's '\n'. */
    const char *u = f[MFM_COL_USER + 1], *i = f[MFM_COL_ITEM + 1];
    size_t un = fn[MFM_COL_USER + 1], in = fn[MFM_COL_ITEM + 1];
    if (!un || !in) goto general;
    float w = r->o.default_weight;
    int wb = 1; /* w fits a byte weight */
    if (has_w) {
      const char *ws = f[MFM_COL_WEIGHT + 1];
      size_t wn = fn[MFM_COL_WEIGHT + 1];
      if (wn == 1 && (unsigned)(ws[0] - '0') < 10) {
        w = (float)(ws[0] - '0'); /* counts and ratings: one digit */
      } else {
        double v;
        if (!mfm_parse_number(ws, wn, &v)) goto general;
        w = (float)v;
        if (!isfinite(w)) goto general;
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
    } else {
      st = mfm_reader_lookup(r, 1, i, in, v, &ii, err);
      if (st != MFM_OK) break;
      if (ii < 0) goto emit;
    }
    if ((c->n == c->cap || (w != 1.0f && !c->vals && !(r->wcode && wb))) &&
        (st = mfm_reader_coo_room(r, w, err)) != MFM_OK)
      break;
    c->rows[c->n] = ui;
    c->cols[c->n] = ii;
    if (c->vals) c->vals[c->n] = w;
    else if (r->wcode) r->wcode[c->n] = (unsigned char)w;
    c->n++;
    r->rep.kept++;
    p = q + 1;
    continue;
  emit:
    st = mfm_reader_emit(r, p, (size_t)(q - p), u, un, r->pos[MFM_COL_USER],
                         i, in, r->pos[MFM_COL_ITEM], w, err);
    if (st != MFM_OK) break;
    p = q + 1;
  }
general:
  *pp = p;
  return st;
}
