/* Data readers: byte sources (files, FIFOs, gzip, RecordIO) and parsers of
   interaction rows (CSV/TSV, JSON lines, sparse feature rows) that map
   external ids to dense indices and append triplets to a COO.  Everything
   is parsed in C; the caller (Lua) only names the files.

     mfm_read_opts o = mfm_read_opts_default();
     o.channel = "train";
     mfm_reader *r;  mfm_source *s;  mfm_csr *x;
     mfm_reader_new(&o, users, items, 1, 1, &r, err);
     mfm_source_open(path, NULL, &s, err);
     mfm_reader_feed(r, s, "part-0001.csv", err);
     mfm_source_free(s);
     mfm_reader_finish(r, &x, err);   -> users x items CSR
     mfm_reader_free(r);
*/
#ifndef MOONFM_READER_H
#define MOONFM_READER_H

#include <stddef.h>
#include <stdint.h>

#include "csr.h"
#include "idmap.h"
#include "status.h"

/* ---- Byte sources ------------------------------------------------------ */

/* A sequential stream of decoded bytes.  The raw bytes come from a regular
   file or a FIFO (read(2) in big blocks, sequential only, EINTR and short
   reads handled; FIFOs are polled every 100 ms so that the stop flag is
   honoured).  Optionally they are RecordIO records (spec rule 116), each
   of which is then a "document"; otherwise the whole file is one.  A
   document that starts with the gzip magic 1f 8b is inflated (several
   gzip members in a row are read as one).  Every document is made to end
   with a newline, so a record or file never runs into the next. */
typedef struct mfm_source mfm_source;

typedef struct mfm_source_opts {
  int record_io;  /* nonzero: unwrap RecordIO records */
  size_t block;   /* raw read size in bytes (0 = 4 MiB) */
} mfm_source_opts;

/* Opens path (borrowed); opts may be NULL for the defaults.  A FIFO is
   opened without blocking (the writer may come later).  MFM_EIO with the
   path and the reason when it cannot be opened or is a directory. */
mfm_status mfm_source_open(const char *path, const mfm_source_opts *opts,
                           mfm_source **out, mfm_err *err);
/* Wraps an open descriptor (kept; closed by mfm_source_free). */
mfm_status mfm_source_open_fd(int fd, const char *name,
                              const mfm_source_opts *opts, mfm_source **out,
                              mfm_err *err);
void mfm_source_free(mfm_source *s);

/* Reads up to cap decoded bytes into buf.  *doc_end (may be NULL) is set
   when the bytes returned (perhaps none) finish a document; *n = 0 with
   *doc_end = 0 is the end of the stream.  MFM_EIO on a read error, MFM_EFORMAT on bad gzip or RecordIO
   data (with the byte offset), MFM_ECANCELED when the stop flag was raised
   while waiting on a FIFO. */
mfm_status mfm_source_read(mfm_source *s, char *buf, size_t cap, size_t *n,
                           int *doc_end, mfm_err *err);

/* Raw bytes consumed so far (before decompression). */
uint64_t mfm_source_raw_bytes(const mfm_source *s);
/* Nonzero when the source is a FIFO. */
int mfm_source_is_fifo(const mfm_source *s);
/* Nonzero once a gzip document was seen. */
int mfm_source_saw_gzip(const mfm_source *s);
/* Size in bytes of a regular file (raw, before decompression); 0 for a
   stream.  Readers use it to size their arrays once. */
uint64_t mfm_source_size(const mfm_source *s);

/* ---- Row parsers ------------------------------------------------------- */

typedef enum mfm_format {
  MFM_FORMAT_CSV = 0, /* delimited text (CSV, TSV, ...) */
  MFM_FORMAT_JSONL,   /* one JSON object per line */
  MFM_FORMAT_SPARSE   /* "id feature[:weight] feature[:weight] ..." */
} mfm_format;

/* The four columns a row may have. */
enum { MFM_COL_USER, MFM_COL_ITEM, MFM_COL_WEIGHT, MFM_COL_TIME,
       MFM_N_COLS };

typedef struct mfm_read_opts {
  mfm_format format;
  char delimiter;      /* CSV: ',', '\t', ';', '|', ' ', or ':' for the
                          two-character "::" of MovieLens' .dat files;
                          0 = detect */
  int header;          /* CSV: 1 present, 0 absent, -1 detect */
  /* Columns: 1-based positions (CSV), or names (CSV with a header, keys of
     JSON lines).  position 0 and name NULL: the default (CSV: 1, 2, then 3
     and 4 when the rows have them, or the usual names under a header;
     JSON: "user", "item", "weight", "timestamp").  Weight and timestamp
     are optional; a row without weight weighs default_weight. */
  int col_pos[MFM_N_COLS];
  const char *col_name[MFM_N_COLS]; /* borrowed */
  float default_weight;             /* 1 */
  int skip_bad;           /* 0: the first malformed row fails; 1: skip */
  int64_t max_bad_rows;   /* with skip_bad: fail past this many (-1 = no cap) */
  double max_bad_fraction; /* with skip_bad: fail past this share of rows */
  const char *channel;    /* name used in messages (borrowed; may be NULL) */
} mfm_read_opts;

mfm_read_opts mfm_read_opts_default(void);
/* NULL when the options are valid, else a message. */
const char *mfm_read_opts_check(const mfm_read_opts *o);

#define MFM_REPORT_BAD_KEPT 5

/* What a read saw.  Rows are data rows: not the header, not blank. */
typedef struct mfm_read_report {
  int64_t rows;            /* data rows parsed (kept + bad + unseen) */
  int64_t kept;            /* triplets appended to the interactions */
  int64_t bad;             /* malformed rows skipped (bad_rows=skip) */
  int64_t blank;           /* blank lines ignored */
  int64_t headers;         /* header lines seen (one per file/record) */
  int64_t dropped;         /* rows dropped for an unknown user or item */
  int64_t unseen_user_rows, unseen_item_rows; /* rows with an unknown id */
  int64_t unseen_users, unseen_items;         /* distinct unknown ids */
  int64_t files;           /* sources fed */
  uint64_t bytes;          /* decoded bytes parsed */
  uint64_t raw_bytes;      /* bytes read before decompression */
  int64_t nonpositive;     /* interactions (duplicates summed) with a
                              weight <= 0, counted by mfm_reader_finish */
  int64_t negative;        /* those with a weight < 0 */
  char delimiter;          /* the CSV delimiter used (0 before any row) */
  int header;              /* the CSV header setting used (-1 undecided) */
  int col_pos[MFM_N_COLS]; /* CSV positions used (1-based; 0 = none) */
  int n_bad_kept;          /* messages of the first skipped rows */
  char bad_rows[MFM_REPORT_BAD_KEPT][512];
} mfm_read_report;

typedef struct mfm_reader mfm_reader;

/* A reader that appends the rows of the sources it is fed to its COO.
   users and items are kept (they must outlive the reader) and grow with
   new ids when grow_users / grow_items is nonzero; otherwise rows with an
   unknown id are dropped and counted.  For MFM_FORMAT_SPARSE, "users" are
   the row ids and "items" the feature names.  opts is copied (the strings
   it points to are kept). */
mfm_status mfm_reader_new(const mfm_read_opts *opts, mfm_idmap *users,
                          mfm_idmap *items, int grow_users, int grow_items,
                          mfm_reader **out, mfm_err *err);
void mfm_reader_free(mfm_reader *r);

/* Parses every row of src (borrowed) to its end.  file (borrowed, may be
   NULL) names it in messages.  MFM_EFORMAT with "channel 'c': file f,
   line l, column k (name): what in row \"...\"" for a malformed row (or
   too many skipped ones), MFM_EIO / MFM_ECANCELED from the source. */
mfm_status mfm_reader_feed(mfm_reader *r, mfm_source *src, const char *file,
                           mfm_err *err);
/* Same, for bytes already in memory (tests, small data). */
mfm_status mfm_reader_feed_bytes(mfm_reader *r, const char *bytes, size_t n,
                                 const char *file, mfm_err *err);

/* The counts so far. */
const mfm_read_report *mfm_reader_report(const mfm_reader *r);
/* The triplets so far (borrowed; vals is NULL while every weight is the
   default weight 1).  While reading, whole weights 0..255 are kept in one
   byte each; this call turns them into vals, and returns NULL when there
   is no memory for that. */
const mfm_coo *mfm_reader_coo(const mfm_reader *r);

/* Checks the bad-row fraction, then builds the CSR (n_rows = size of the
   users map, n_cols = size of the items map; duplicates summed) from the
   triplets, which it consumes: the reader holds no rows afterwards. */
mfm_status mfm_reader_finish(mfm_reader *r, mfm_csr **out, mfm_err *err);

/* One call for a list of files: paths[i] (named names[i] in messages, or
   the path when names is NULL) read in order into *out (a fresh COO the
   caller frees with mfm_coo_free; vals may be NULL = all ones). */
mfm_status mfm_read_interactions(const char *const *paths,
                                 const char *const *names, int n_paths,
                                 const mfm_source_opts *sopts,
                                 const mfm_read_opts *opts, mfm_idmap *users,
                                 mfm_idmap *items, int grow_users,
                                 int grow_items, mfm_coo *out,
                                 mfm_read_report *rep, mfm_err *err);

/* Parses a decimal number (optional sign, digits, '.', exponent, or
   inf/nan) spanning exactly [p, p + n).  Returns 0 when it is not one. */
int mfm_parse_number(const char *p, size_t n, double *out);

/* Builds the CSR of a COO in place: the triplets are sorted by row in
   their own arrays (American flag sort), which then become the CSR's
   indices and data, so the peak memory is the COO's and not twice it.
   Same result as mfm_csr_from_coo (columns ascending, duplicates summed).
   *coo is emptied (even on failure). */
mfm_status mfm_csr_from_coo_inplace(int32_t n_rows, int32_t n_cols,
                                    mfm_coo *coo, mfm_csr **out,
                                    mfm_err *err);

#endif
