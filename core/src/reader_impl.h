/* Internals shared by reader.c and the format parsers (reader_*.c). */
#ifndef MOONFM_READER_IMPL_H
#define MOONFM_READER_IMPL_H

#include "moonfm/reader.h"

#include <math.h>
#include <string.h>

/* Bytes after the data in the line buffer that are always readable and
   zero: the plain-row path loads up to 32 bytes from any row start, so
   it may look up to 31 bytes past the block's last '\n'. */
#define MFM_READ_PAD 32
/* Rows with more fields before the last one used go the general way. */
#define MFM_FAST_MAX_COLS 32
/* Longest user id the last-user check keeps. */
#define MFM_LAST_U_MAX 32

struct mfm_reader {
  mfm_read_opts o;
  mfm_idmap *users, *items;
  int grow_users, grow_items;
  mfm_idmap *unseen_u, *unseen_i; /* distinct unknown ids (lazy) */
  mfm_coo coo;                    /* vals NULL while every weight is 1
                                     or while wcode holds them */
  unsigned char *wcode;           /* weights while all are whole numbers
                                     0..255: one byte each, not four */
  int64_t coo_hint;               /* entries expected by the end of the
                                     file being read (0: unknown) */
  mfm_read_report rep;
  char *buf;                      /* line buffer */
  size_t cap;
  char *scratch;                  /* decoded fields of one line */
  size_t scratch_cap;
  /* Where we are, for messages. */
  const char *file;
  int64_t line;
  int doc_fresh;                  /* next line is a document's first */
  /* CSV, fixed at the first row of the first file. */
  int resolved;
  char delim;
  int header;
  int pos[MFM_N_COLS];            /* 1-based; 0 none */
  int max_pos;
  int named;                      /* positions come from header names */
  int header_guess;               /* the header was detected only because
                                     its weight field is not a number */
  /* The plain-row path (reader_csv_fast.c): what field k (0-based) of a
     row holds, MFM_COL_* + 1 or 0 for a field not used; fast_cols 0
     when it cannot take this layout. */
  unsigned char role[MFM_FAST_MAX_COLS];
  int fast_cols;
  size_t scratch_used;            /* decoded bytes in scratch this line */
  /* Small canonical decimal ids -> index + 1, for users [0] and items
     [1]: one array load instead of a hash probe (dense integer ids are
     the common case).  A cache only: the id maps stay the truth. */
  int32_t *direct[2];
  uint64_t direct_n[2];
  /* complete: every canonical decimal id of the map below direct_n is in
     direct, so a miss there means a new id (mfm_idmap_append_new).  It
     holds from an empty map while only this reader adds ids; over_min is
     the least such id added but not cached (the cache may not grow past
     it), seen the map's size when the last feed ended. */
  int complete[2];
  uint64_t over_min[2];
  int32_t seen[2];
  /* The last user id seen (sorted data repeats it row after row). */
  int32_t last_u;
  size_t last_u_len;
  char last_u_id[MFM_LAST_U_MAX + 8]; /* + 8: word copies */
};

/* A field of the current line. */
typedef struct mfm_field {
  const char *p;
  size_t n;
  int present;
} mfm_field;

/* Parsers: every line of [p, end) (which ends with '\n'). */
mfm_status mfm_reader_csv_lines(mfm_reader *r, const char *p,
                                const char *end, mfm_err *err);
mfm_status mfm_reader_jsonl_lines(mfm_reader *r, const char *p,
                                  const char *end, mfm_err *err);
mfm_status mfm_reader_sparse_lines(mfm_reader *r, const char *p,
                                   const char *end, mfm_err *err);

/* Adds one interaction (ids as bytes).  Handles unseen ids, the COO, and
   the row counters.  A bad id makes a bad row (see mfm_reader_bad). */
mfm_status mfm_reader_emit(mfm_reader *r, const char *line, size_t line_n,
                           const char *u, size_t un, int ucol,
                           const char *i, size_t in, int icol, float w,
                           mfm_err *err);
/* Checks an id: empty or NUL bytes make a bad row.  Returns MFM_OK with
   *ok = 1 when the id is good. */
mfm_status mfm_reader_check_id(mfm_reader *r, const char *line,
                               size_t line_n, int col, const char *what,
                               const char *id, size_t n, int *ok,
                               mfm_err *err);

/* A malformed row: with bad_rows=fail, the located error; with skip, the
   row is counted (and its message kept among the first few) and MFM_OK is
   returned unless the cap is passed.  col is 1-based (0: no column);
   colname may be NULL. */
mfm_status mfm_reader_bad(mfm_reader *r, const char *line, size_t line_n,
                          int col, const char *colname, mfm_err *err,
                          const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 7, 8)))
#endif
    ;

/* Index of one id in users (which 0) or items (which 1), adding it when
   the map grows; *k = -1 for an id the map does not know and may not
   learn.  v is the id's value when it is a canonical decimal that may go
   to the small-integer cache, else -1.  No row checks (empty, NUL): the
   caller made them. */
mfm_status mfm_reader_lookup(mfm_reader *r, int which, const char *id,
                             size_t n, int64_t v, int32_t *k, mfm_err *err);

/* Room in the COO for one more entry of weight w (the weights array
   appears with the first weight that is not 1). */
mfm_status mfm_reader_coo_room(mfm_reader *r, float w, mfm_err *err);

/* Plain CSV rows from *p on, until the first row that needs the general
   parser (or end); *p is left at that row.  Same results as the general
   parser for every row it takes. */
mfm_status mfm_reader_csv_fast(mfm_reader *r, const char **p,
                               const char *end, mfm_err *err);

/* Sets role[] and fast_cols from pos[] and max_pos. */
void mfm_reader_csv_fast_layout(mfm_reader *r);

/* Room for n decoded bytes in r->scratch (at least the line length). */
mfm_status mfm_reader_scratch(mfm_reader *r, size_t n, mfm_err *err);


/* Fails (MFM_EFORMAT, with the place and a fix) when a document's first
   line s..e (BOM removed) shows a file moonfm cannot read as text: another
   compression or binary format, UTF-16, CR-only line ends, or (jsonl) a
   JSON array or an object over several lines. */
mfm_status mfm_reader_check_doc(mfm_reader *r, const char *s, const char *e,
                                int jsonl, mfm_err *err);

/* The column (MFM_COL_*) a header name usually means, or -1. */
int mfm_reader_known_col(const char *s, size_t n);

/* Column names for messages. */
extern const char *const mfm_col_names[MFM_N_COLS];

static inline int mfm_is_space(char c) { return c == ' ' || c == '\t'; }

/* w is kept exactly as a byte weight (0..255, whole, not -0). */
static inline int mfm_weight_byte(float w) {
  return w >= 0.0f && w <= 255.0f && (float)(int)w == w && !signbit(w);
}

/* csr_build.c: mfm_csr_from_coo_inplace, also taking the reader's byte
   weight codes (n entries, or NULL; consumed) for vals while those are
   NULL.  When repeated entries sum to a weight that is not finite, their
   row and column go to bad (or NULL) and the status is MFM_EFORMAT. */
mfm_status mfm_csr_build(int32_t n_rows, int32_t n_cols, mfm_coo *coo,
                         unsigned char *codes, int32_t bad[2],
                         mfm_csr **out, mfm_err *err);

#endif
