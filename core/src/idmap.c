/* Id maps: open addressing (linear probing) over 64-bit slots that hold a
   32-bit hash tag and index + 1; the id bytes live once, back to back, in
   one arena, so the serialised view is the map itself.  The home slot is
   taken from the tag's low bits, so growing the table moves slots without
   reading (or hashing) the ids again. */
#include "moonfm/idmap.h"

#include <string.h>

#include "moonfm/alloc.h"
#include "hugepage.h"

struct mfm_idmap {
  int32_t n;
  uint64_t mask;    /* slot count - 1 (a power of two) */
  uint64_t *slots;  /* 0 = empty, else (tag << 32) | (index + 1) */
  char *bytes;      /* all ids, concatenated */
  int64_t n_bytes, cap_bytes;
  int64_t *offsets; /* n + 1 offsets into bytes */
  int64_t cap_ids;  /* room in offsets, not counting the leading 0 */
  /* Slots of ids added by mfm_idmap_append_new and not placed yet: they
     are placed together (their cache misses overlap) before the table is
     next read. */
  uint64_t pend[64];
  int n_pend;
};

/* Places the pending slots: all their home lines are asked for first. */
static void settle(mfm_idmap *m) {
  int n = m->n_pend;
  if (!n) return;
#if defined(__GNUC__)
  for (int k = 0; k < n; k++)
    __builtin_prefetch(&m->slots[(m->pend[k] >> 32) & m->mask], 1);
#endif
  for (int k = 0; k < n; k++) {
    uint64_t i = (m->pend[k] >> 32) & m->mask;
    while (m->slots[i]) i = (i + 1) & m->mask;
    m->slots[i] = m->pend[k];
  }
  m->n_pend = 0;
}

void mfm_idmap_settle(mfm_idmap *m) { settle(m); }

/* A fast 64-bit hash of short byte strings: one multiply round per 8
   bytes, then murmur3's finaliser so that every input bit reaches the low
   bits (the slot) and the high bits (the tag).  Not seeded: indices follow
   insertion order, so the hash never shows in results. */
/* n (4 or 8) bytes at p as a little-endian number. */
static inline uint64_t load_le(const unsigned char *p, int n) {
  uint64_t w = 0;
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (n == 8) {
    memcpy(&w, p, 8);
  } else {
    uint32_t v;
    memcpy(&v, p, 4);
    w = v;
  }
#else
  for (int k = 0; k < n; k++) w |= (uint64_t)p[k] << (8 * k);
#endif
  return w;
}

uint64_t mfm_hash_bytes(const void *p, size_t len) {
  const unsigned char *s = p;
  uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)len * 0xff51afd7ed558ccdull);
  while (len >= 8) {
    uint64_t w = load_le(s, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    s += 8;
    len -= 8;
  }
  if (len) {
    /* The last len (< 8) bytes as a little-endian number, without a loop
       over them: when bytes precede them, one word load shifted down;
       else two 4-byte loads, or the first, middle and last byte, which
       overlap harmlessly. */
    uint64_t w;
    if (s != (const unsigned char *)p) {
      w = load_le(s + len - 8, 8) >> (8 * (8 - len));
    } else if (len >= 4) {
      w = load_le(s, 4) | load_le(s + len - 4, 4) << (8 * (len - 4));
    } else {
      w = (uint64_t)s[0] | (uint64_t)s[len / 2] << (8 * (len / 2)) |
          (uint64_t)s[len - 1] << (8 * (len - 1));
    }
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 32;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

mfm_status mfm_idmap_new(mfm_idmap **out, mfm_err *err) {
  *out = NULL;
  mfm_idmap *m = mfm_calloc(1, sizeof *m);
  if (!m) goto fail;
  m->mask = 63;
  m->slots = mfm_calloc(64, sizeof *m->slots);
  m->offsets = mfm_calloc(17, sizeof *m->offsets);
  m->cap_ids = 16;
  if (!m->slots || !m->offsets) goto fail;
  *out = m;
  return MFM_OK;
fail:
  mfm_idmap_free(m);
  return mfm_err_set(err, MFM_ENOMEM, "out of memory creating an id map");
}

void mfm_idmap_free(mfm_idmap *m) {
  if (!m) return;
  mfm_free(m->slots);
  mfm_free(m->bytes);
  mfm_free(m->offsets);
  mfm_free(m);
}

int32_t mfm_idmap_size(const mfm_idmap *m) { return m->n; }

/* x[0, n) == y[0, n): short ids (most are) by two overlapping word
   loads that stay inside both, without a call. */
static inline int same_bytes(const unsigned char *x, const unsigned char *y,
                             size_t n) {
  if (n >= 8 && n <= 16)
    return load_le(x, 8) == load_le(y, 8) &&
           load_le(x + n - 8, 8) == load_le(y + n - 8, 8);
  if (n >= 4 && n < 8)
    return load_le(x, 4) == load_le(y, 4) &&
           load_le(x + n - 4, 4) == load_le(y + n - 4, 4);
  return memcmp(x, y, n) == 0;
}

static inline int same(const mfm_idmap *m, int32_t i, const char *id,
                       size_t len) {
  int64_t a = m->offsets[i], b = m->offsets[i + 1];
  return (size_t)(b - a) == len &&
         same_bytes((const unsigned char *)m->bytes + a,
                    (const unsigned char *)id, len);
}

/* The slot holding id, or the empty slot where it would go. */
static inline uint64_t probe(const mfm_idmap *m, const char *id, size_t len,
                             uint64_t h) {
  uint64_t tag = h >> 32, i = tag & m->mask;
  for (;;) {
    uint64_t s = m->slots[i];
    if (s == 0) return i;
    if ((s >> 32) == tag && same(m, (int32_t)(uint32_t)s - 1, id, len))
      return i;
    i = (i + 1) & m->mask;
  }
}

int32_t mfm_idmap_find(const mfm_idmap *m, const char *id, size_t len) {
  if (m->n_pend) settle((mfm_idmap *)m); /* only inside a reader's feed */
  uint64_t s = m->slots[probe(m, id, len, mfm_hash_bytes(id, len))];
  return s ? (int32_t)(uint32_t)s - 1 : -1;
}

/* A table of n_slots (a power of two, at most 2^32) holding what the
   current one holds. */
static mfm_status rehash(mfm_idmap *m, uint64_t n_slots) {
  settle(m);
  uint64_t *slots = mfm_calloc(n_slots, sizeof *slots);
  if (!slots) return MFM_ENOMEM;
  mfm_advise_huge(slots, n_slots * sizeof *slots);
  uint64_t mask = n_slots - 1;
  for (uint64_t k = 0; k <= m->mask; k++) {
    uint64_t s = m->slots[k];
    if (!s) continue;
    uint64_t i = (s >> 32) & mask;
    while (slots[i]) i = (i + 1) & mask;
    slots[i] = s;
  }
  mfm_free(m->slots);
  m->slots = slots;
  m->mask = mask;
  return MFM_OK;
}

/* Slots for every id of the arena (a map loaded from its view), in a
   fresh table of n_slots. */
static mfm_status index_all(mfm_idmap *m, uint64_t n_slots) {
  uint64_t *slots = mfm_calloc(n_slots, sizeof *slots);
  if (!slots) return MFM_ENOMEM;
  uint64_t mask = n_slots - 1;
  for (int32_t k = 0; k < m->n; k++) {
    int64_t a = m->offsets[k];
    uint64_t h = mfm_hash_bytes(m->bytes + a, (size_t)(m->offsets[k + 1] - a));
    uint64_t i = (h >> 32) & mask;
    while (slots[i]) i = (i + 1) & mask;
    slots[i] = (h >> 32 << 32) | (uint64_t)(k + 1);
  }
  mfm_free(m->slots);
  m->slots = slots;
  m->mask = mask;
  return MFM_OK;
}

/* Room for one more id of len bytes: offsets, arena, and a load factor
   kept under 0.7 so linear probes stay short. */
static mfm_status reserve(mfm_idmap *m, size_t len) {
  if (m->n >= m->cap_ids) {
    int64_t cap = m->cap_ids * 2;
    int64_t *o = mfm_realloc(m->offsets, (size_t)(cap + 1) * sizeof *o);
    if (!o) return MFM_ENOMEM;
    m->offsets = o;
    m->cap_ids = cap;
  }
  if ((uint64_t)m->n_bytes + len > (uint64_t)m->cap_bytes) {
    int64_t cap = m->cap_bytes ? m->cap_bytes : 256;
    while ((uint64_t)cap < (uint64_t)m->n_bytes + len) cap *= 2;
    char *b = mfm_realloc(m->bytes, (size_t)cap);
    if (!b) return MFM_ENOMEM;
    m->bytes = b;
    m->cap_bytes = cap;
  }
  if ((uint64_t)(m->n + 1) * 10 > (m->mask + 1) * 7)
    return rehash(m, (m->mask + 1) * 2);
  return MFM_OK;
}

/* Adds id (absent) at slot i, the empty slot probe() found. */
static mfm_status insert(mfm_idmap *m, const char *id, size_t len,
                         uint64_t h, uint64_t i, int32_t *index,
                         mfm_err *err) {
  if (m->n == INT32_MAX)
    return mfm_err_set(err, MFM_EINVAL, "id map is full (%d ids)", m->n);
  uint64_t mask = m->mask;
  if (reserve(m, len) != MFM_OK)
    return mfm_err_set(err, MFM_ENOMEM, "out of memory growing an id map "
                       "of %d ids", m->n);
  if (m->mask != mask) i = probe(m, id, len, h); /* rehashed: look again */
  if (len) memcpy(m->bytes + m->n_bytes, id, len);
  m->n_bytes += (int64_t)len;
  m->offsets[m->n + 1] = m->n_bytes;
  m->slots[i] = (h >> 32 << 32) | (uint64_t)(m->n + 1);
  *index = m->n++;
  return MFM_OK;
}

mfm_status mfm_idmap_intern(mfm_idmap *m, const char *id, size_t len,
                            int32_t *index, mfm_err *err) {
  return mfm_idmap_intern_hashed(m, id, len, mfm_hash_bytes(id, len), index,
                                 err);
}

mfm_status mfm_idmap_append_new(mfm_idmap *m, const char *id, size_t len,
                                 int32_t *index, mfm_err *err) {
  if (m->n == INT32_MAX)
    return mfm_err_set(err, MFM_EINVAL, "id map is full (%d ids)", m->n);
  if (m->n_pend == (int)(sizeof m->pend / sizeof m->pend[0])) settle(m);
  if (reserve(m, len) != MFM_OK)
    return mfm_err_set(err, MFM_ENOMEM, "out of memory growing an id map "
                       "of %d ids", m->n);
  uint64_t h = mfm_hash_bytes(id, len);
  if (len) memcpy(m->bytes + m->n_bytes, id, len);
  m->n_bytes += (int64_t)len;
  m->offsets[m->n + 1] = m->n_bytes;
  m->pend[m->n_pend++] = (h >> 32 << 32) | (uint64_t)(m->n + 1);
  *index = m->n++;
  return MFM_OK;
}

mfm_status mfm_idmap_intern_hashed(mfm_idmap *m, const char *id, size_t len,
                                   uint64_t h, int32_t *index, mfm_err *err) {
  settle(m);
  uint64_t i = probe(m, id, len, h), s = m->slots[i];
  if (s) {
    *index = (int32_t)(uint32_t)s - 1;
    return MFM_OK;
  }
  return insert(m, id, len, h, i, index, err);
}

int32_t mfm_idmap_find_hashed(const mfm_idmap *m, const char *id, size_t len,
                              uint64_t h) {
  if (m->n_pend) settle((mfm_idmap *)m);
  uint64_t s = m->slots[probe(m, id, len, h)];
  return s ? (int32_t)(uint32_t)s - 1 : -1;
}

const char *mfm_idmap_get(const mfm_idmap *m, int32_t i, size_t *len) {
  int64_t a = m->offsets[i];
  *len = (size_t)(m->offsets[i + 1] - a);
  return m->bytes ? m->bytes + a : "";
}

void mfm_idmap_view(const mfm_idmap *m, const char **bytes,
                    const int64_t **offsets) {
  *bytes = m->bytes ? m->bytes : "";
  *offsets = m->offsets;
}

size_t mfm_idmap_memory(const mfm_idmap *m) {
  return sizeof *m + (size_t)(m->mask + 1) * sizeof *m->slots +
         (size_t)m->cap_bytes + (size_t)(m->cap_ids + 1) * sizeof *m->offsets;
}

mfm_status mfm_idmap_from_view(const char *bytes, int64_t n_bytes,
                               const int64_t *offsets, int32_t n,
                               mfm_idmap **out, mfm_err *err) {
  *out = NULL;
  if (n < 0 || n_bytes < 0)
    return mfm_err_set(err, MFM_EFORMAT, "id map: negative size");
  if (offsets[0] != 0)
    return mfm_err_set(err, MFM_EFORMAT, "id map: first offset is %lld, "
                       "not 0", (long long)offsets[0]);
  for (int32_t i = 0; i < n; i++) {
    if (offsets[i + 1] < offsets[i] || offsets[i + 1] > n_bytes)
      return mfm_err_set(err, MFM_EFORMAT, "id map: offset %d (%lld) is "
                         "out of order or past the %lld id bytes", i + 1,
                         (long long)offsets[i + 1], (long long)n_bytes);
  }
  mfm_idmap *m;
  mfm_status st = mfm_idmap_new(&m, err);
  if (st != MFM_OK) return st;
  uint64_t slots = 64;
  while ((uint64_t)n * 10 >= slots * 7) slots *= 2;
  int64_t cap_ids = n > 16 ? n : 16;
  int64_t *o = mfm_realloc(m->offsets, (size_t)(cap_ids + 1) * sizeof *o);
  if (!o) goto nomem;
  m->offsets = o;
  m->cap_ids = cap_ids;
  if (offsets[n] > 0) {
    m->bytes = mfm_malloc((size_t)offsets[n]);
    if (!m->bytes) goto nomem;
    m->cap_bytes = offsets[n];
    memcpy(m->bytes, bytes, (size_t)offsets[n]);
  }
  memcpy(m->offsets, offsets, ((size_t)n + 1) * sizeof *offsets);
  m->n_bytes = offsets[n];
  m->n = n;
  if (index_all(m, slots) != MFM_OK) goto nomem;
  /* index_all() placed every id blindly; a repeat shows up as two slots that
     compare equal, found by looking each id up again. */
  for (int32_t k = 0; k < n; k++) {
    size_t len;
    const char *id = mfm_idmap_get(m, k, &len);
    if (mfm_idmap_find(m, id, len) != k) {
      mfm_idmap_free(m);
      return mfm_err_set(err, MFM_EFORMAT, "id map: id %d repeats an "
                         "earlier id", k + 1);
    }
  }
  *out = m;
  return MFM_OK;
nomem:
  mfm_idmap_free(m);
  return mfm_err_set(err, MFM_ENOMEM, "out of memory loading an id map of "
                     "%d ids", n);
}

mfm_status mfm_idmap_clone(const mfm_idmap *m, mfm_idmap **out,
                           mfm_err *err) {
  return mfm_idmap_from_view(m->bytes ? m->bytes : "", m->n_bytes,
                             m->offsets, m->n, out, err);
}
