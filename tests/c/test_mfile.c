/* The model file: round trips in both open modes, the factors view, fill,
   every truncation and every single-bit flip refused, crafted files with
   a valid checksum but lying fields refused, write failures (bad folder,
   a full tmpfs when mounting is permitted, a file-size limit) leaving the
   previous file intact, allocation failures, and the .npy / id exports. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "moonfm/mfile.h"
#include "moonfm/mfm.h"
#include "moonfm/npy.h"

static char tmpdir[512];

static void path_in(char *out, size_t cap, const char *dir,
                    const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  fseek(fp, 0, SEEK_END);
  long len = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
  if (b && fread(b, 1, (size_t)len, fp) != (size_t)len) {
    free(b);
    b = NULL;
  }
  fclose(fp);
  *n = (size_t)len;
  return b;
}

static void spit(const char *path, const void *b, size_t n) {
  FILE *fp = fopen(path, "wb");
  if (!fp) return;
  fwrite(b, 1, n, fp);
  fclose(fp);
}

/* Files in dir whose name starts with the temporary prefix. */
static int count_tmp(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  if (!d) return -1;
  while ((e = readdir(d)))
    if (strncmp(e->d_name, MFM_TMP_PREFIX, strlen(MFM_TMP_PREFIX)) == 0) n++;
  closedir(d);
  return n;
}

static uint64_t rd64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static void wr64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void wr32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Recomputes the trailer checksum of a patched image, as a forger would. */
static void fix_crc(unsigned char *b, size_t n) {
  wr32(b + n - 16, mfm_crc32(0, b, n - 16));
}

/* ---- a small model: 5 users, 7 items, 3 factors ------------------------ */

enum { NU = 5, NI = 7, K = 3 };
static float uf[NU * K], itf[NI * K], ub[NU], ib[NI];
static int64_t offs[4] = {0, 2, 5, 9};
static const char ids[] = "u1u22u333";
static const char header[] = "{\"kind\":\"test\",\"n_users\":5}";

static void fill_model(void) {
  for (int i = 0; i < NU * K; i++) uf[i] = 0.5f * (float)i - 1.0f;
  for (int i = 0; i < NI * K; i++) itf[i] = 1.0f / (float)(i + 1);
  for (int i = 0; i < NU; i++) ub[i] = (float)i * 0.25f;
  for (int i = 0; i < NI; i++) ib[i] = -(float)i;
}

static int model_arrays(mfm_array *a) {
  memset(a, 0, 6 * sizeof *a);
  strcpy(a[0].name, "user_factors");
  a[0].dtype = MFM_F32; a[0].rows = NU; a[0].cols = K; a[0].data = uf;
  strcpy(a[1].name, "item_factors");
  a[1].dtype = MFM_F32; a[1].rows = NI; a[1].cols = K; a[1].data = itf;
  strcpy(a[2].name, "user_bias");
  a[2].dtype = MFM_F32; a[2].rows = NU; a[2].cols = 1; a[2].data = ub;
  strcpy(a[3].name, "item_bias");
  a[3].dtype = MFM_F32; a[3].rows = NI; a[3].cols = 1; a[3].data = ib;
  strcpy(a[4].name, "users.offsets");
  a[4].dtype = MFM_I64; a[4].rows = 4; a[4].cols = 1; a[4].data = offs;
  strcpy(a[5].name, "users.ids");
  a[5].dtype = MFM_U8; a[5].rows = 9; a[5].cols = 1; a[5].data = (void *)ids;
  return 6;
}

static mfm_status write_model(const char *path, uint32_t flags,
                              mfm_err *err) {
  mfm_array a[6];
  int n = model_arrays(a);
  return mfm_mfile_write(path, flags, header, strlen(header), a, n, err);
}

static void test_roundtrip(void) {
  char path[600];
  path_in(path, sizeof path, tmpdir, "model.moonfm");
  fill_model();
  mfm_err err;
  CHECK(write_model(path, 0, &err) == MFM_OK);
  CHECK(count_tmp(tmpdir) == 0);
  size_t n;
  unsigned char *b = slurp(path, &n);
  CHECK(b && n % 64 == 16 && memcmp(b, "MOONFM\0\n", 8) == 0);
  CHECK(b && memcmp(b + n - 8, "MFMEND\0\n", 8) == 0);
  CHECK(b && rd64(b + 16) == n);
  free(b);

  for (int mode = 0; mode < 2; mode++) {
    mfm_mfile *f;
    CHECK(mfm_mfile_open(path, (mfm_mfile_mode)mode, &f, &err) == MFM_OK);
    if (!f) continue;
    size_t hl;
    const char *h = mfm_mfile_header(f, &hl);
    CHECK(hl == strlen(header) && strcmp(h, header) == 0);
    CHECK(mfm_mfile_version(f) == 1 && mfm_mfile_flags(f) == 0);
    CHECK(mfm_mfile_count(f) == 6);
    CHECK(mfm_mfile_find(f, "item_bias") == 3);
    CHECK(mfm_mfile_find(f, "nope") == -1);
    for (int i = 0; i < mfm_mfile_count(f); i++) {
      mfm_array x;
      mfm_mfile_array(f, i, &x);
      CHECK(((uintptr_t)x.data % 64) == 0);
    }
    mfm_array x;
    mfm_mfile_array(f, 1, &x);
    CHECK(strcmp(x.name, "item_factors") == 0 && x.dtype == MFM_F32 &&
          x.rows == NI && x.cols == K);
    CHECK(memcmp(x.data, itf, sizeof itf) == 0);
    mfm_mfile_array(f, 5, &x);
    CHECK(x.rows == 9 && memcmp(x.data, ids, 9) == 0);

    /* fill: into zeroed copies, then compare. */
    float u2[NU * K] = {0}, i2[NI * K] = {0};
    mfm_array dst[2];
    memset(dst, 0, sizeof dst);
    strcpy(dst[0].name, "user_factors");
    dst[0].dtype = MFM_F32; dst[0].rows = NU; dst[0].cols = K;
    dst[0].data = u2;
    strcpy(dst[1].name, "item_factors");
    dst[1].dtype = MFM_F32; dst[1].rows = NI; dst[1].cols = K;
    dst[1].data = i2;
    CHECK(mfm_mfile_fill(f, dst, 2, &err) == MFM_OK);
    CHECK(memcmp(u2, uf, sizeof uf) == 0 && memcmp(i2, itf, sizeof itf) == 0);
    dst[1].cols = K + 1;
    CHECK(mfm_mfile_fill(f, dst, 2, &err) == MFM_EFORMAT);
    CHECK(strstr(err.msg, "'item_factors'") && strstr(err.msg, "7 x 4") &&
          strstr(err.msg, path));
    strcpy(dst[1].name, "absent");
    CHECK(mfm_mfile_fill(f, dst, 2, &err) == MFM_EFORMAT);
    CHECK(strstr(err.msg, "'absent' is missing") != NULL);

    /* The factors view points straight into the file. */
    mfm_factors fa;
    CHECK(mfm_mfile_factors(f, NULL, &fa, &err) == MFM_OK);
    CHECK(fa.n_users == NU && fa.n_items == NI && fa.k == K);
    CHECK(fa.ld_user == K && fa.ld_item == K);
    CHECK(fa.user[4] == uf[4] && fa.item[20] == itf[20]);
    CHECK(fa.user_bias && fa.user_bias[3] == ub[3]);
    CHECK(fa.item_bias && fa.item_bias[6] == ib[6]);
    mfm_mfile_names nm = mfm_mfile_names_default();
    nm.user_bias = "no_such_bias";
    CHECK(mfm_mfile_factors(f, &nm, &fa, &err) == MFM_OK);
    CHECK(fa.user_bias == NULL && fa.item_bias != NULL);
    nm.item = "user_bias"; /* wrong shape: 1 column, not K */
    CHECK(mfm_mfile_factors(f, &nm, &fa, &err) == MFM_EFORMAT);
    nm = mfm_mfile_names_default();
    nm.user = "missing";
    CHECK(mfm_mfile_factors(f, &nm, &fa, &err) == MFM_EFORMAT);
    mfm_mfile_free(f);
  }

  /* Checkpoint flag, empty header, zero arrays, an empty array. */
  CHECK(mfm_mfile_write(path, MFM_MFILE_CHECKPOINT, "", 0, NULL, 0, &err) ==
        MFM_OK);
  mfm_mfile *f;
  CHECK(mfm_mfile_open(path, MFM_MFILE_READ, &f, &err) == MFM_OK);
  if (f) {
    CHECK(mfm_mfile_flags(f) == MFM_MFILE_CHECKPOINT);
    CHECK(mfm_mfile_count(f) == 0);
    mfm_mfile_free(f);
  }
  mfm_array e;
  memset(&e, 0, sizeof e);
  strcpy(e.name, "empty");
  e.dtype = MFM_F64;
  e.rows = 0;
  e.cols = 9;
  CHECK(mfm_mfile_write(path, 0, "{}", 2, &e, 1, &err) == MFM_OK);
  CHECK(mfm_mfile_open(path, MFM_MFILE_MAP, &f, &err) == MFM_OK);
  if (f) {
    mfm_array x;
    mfm_mfile_array(f, 0, &x);
    CHECK(x.rows == 0 && x.cols == 9 && x.dtype == MFM_F64);
    mfm_mfile_free(f);
  }
}

static void test_bad_args(void) {
  char path[600];
  path_in(path, sizeof path, tmpdir, "bad.moonfm");
  mfm_err err;
  mfm_array a[6];
  model_arrays(a);
  CHECK(mfm_mfile_write(path, 0x80, "", 0, a, 1, &err) == MFM_EINVAL);
  strcpy(a[1].name, "user_factors");
  CHECK(mfm_mfile_write(path, 0, "", 0, a, 2, &err) == MFM_EINVAL);
  CHECK(strstr(err.msg, "appears twice") != NULL);
  model_arrays(a);
  a[0].dtype = (mfm_dtype)99;
  CHECK(mfm_mfile_write(path, 0, "", 0, a, 1, &err) == MFM_EINVAL);
  model_arrays(a);
  a[0].rows = -1;
  CHECK(mfm_mfile_write(path, 0, "", 0, a, 1, &err) == MFM_EINVAL);
  model_arrays(a);
  a[0].rows = INT64_MAX;
  a[0].cols = INT64_MAX;
  CHECK(mfm_mfile_write(path, 0, "", 0, a, 1, &err) == MFM_EINVAL);
  model_arrays(a);
  a[0].data = NULL;
  CHECK(mfm_mfile_write(path, 0, "", 0, a, 1, &err) == MFM_EINVAL);
  model_arrays(a);
  a[0].name[0] = '\0';
  CHECK(mfm_mfile_write(path, 0, "", 0, a, 1, &err) == MFM_EINVAL);
  model_arrays(a);
  memset(a[0].name, 'x', sizeof a[0].name); /* no NUL */
  CHECK(mfm_mfile_write(path, 0, "", 0, a, 1, &err) == MFM_EINVAL);
  CHECK(mfm_mfile_write(path, 0, "", 0, a, -1, &err) == MFM_EINVAL);
  CHECK(access(path, F_OK) != 0);
  CHECK(count_tmp(tmpdir) == 0);

  /* Missing folder: EIO naming the path. */
  char nodir[700];
  path_in(nodir, sizeof nodir, tmpdir, "no/such/dir/m.moonfm");
  CHECK(write_model(nodir, 0, &err) == MFM_EIO);
  CHECK(strstr(err.msg, nodir) != NULL);

  /* Reading: missing file, a folder, an empty file. */
  mfm_mfile *f;
  CHECK(mfm_mfile_open(nodir, MFM_MFILE_READ, &f, &err) == MFM_EIO);
  CHECK(f == NULL && strstr(err.msg, nodir) != NULL);
  CHECK(mfm_mfile_open(tmpdir, MFM_MFILE_READ, &f, &err) == MFM_EFORMAT);
  CHECK(strstr(err.msg, "not a regular file") != NULL);
  spit(path, "", 0);
  CHECK(mfm_mfile_open(path, MFM_MFILE_MAP, &f, &err) == MFM_EFORMAT);
  CHECK(strstr(err.msg, "empty") != NULL);
  spit(path, "hello, world: not a model at all", 32);
  CHECK(mfm_mfile_open(path, MFM_MFILE_READ, &f, &err) == MFM_EFORMAT);
  CHECK(strstr(err.msg, "bad magic") != NULL);
}

/* Every prefix of a valid file is refused in both modes, with a message
   that names the path. */
static void test_truncation(void) {
  char good[600], path[600];
  path_in(good, sizeof good, tmpdir, "good.moonfm");
  path_in(path, sizeof path, tmpdir, "trunc.moonfm");
  mfm_err err;
  CHECK(write_model(good, 0, &err) == MFM_OK);
  size_t n;
  unsigned char *b = slurp(good, &n);
  if (!b) return;
  int refused = 0, named = 0, hinted = 0;
  for (size_t len = 0; len < n; len++) {
    spit(path, b, len);
    mfm_mfile *f = NULL;
    mfm_status st = mfm_mfile_open(path, (mfm_mfile_mode)(len % 2), &f, &err);
    refused += st == MFM_EFORMAT && f == NULL;
    named += strstr(err.msg, path) != NULL;
    hinted += strstr(err.msg, "truncated") != NULL;
    mfm_mfile_free(f);
  }
  CHECK(refused == (int)n);
  CHECK(named == (int)n);
  CHECK(hinted == (int)n);
  spit(path, b, 40);
  mfm_mfile *f;
  mfm_mfile_open(path, MFM_MFILE_READ, &f, &err);
  CHECK(strstr(err.msg, "shorter than the fixed preamble") != NULL);
  spit(path, b, n - 1);
  mfm_mfile_open(path, MFM_MFILE_READ, &f, &err);
  CHECK(strstr(err.msg, "preamble says") != NULL);
  /* Appended bytes are refused too. */
  unsigned char *longer = malloc(n + 3);
  memcpy(longer, b, n);
  memcpy(longer + n, "xyz", 3);
  spit(path, longer, n + 3);
  CHECK(mfm_mfile_open(path, MFM_MFILE_READ, &f, &err) == MFM_EFORMAT);
  CHECK(strstr(err.msg, "appended") != NULL);
  free(longer);
  free(b);
}

/* Every single-bit flip is refused (CRC-32 catches all of them, the
   trailer fields are checked on their own). */
static void test_bitflips(void) {
  char good[600], path[600];
  path_in(good, sizeof good, tmpdir, "good.moonfm");
  path_in(path, sizeof path, tmpdir, "flip.moonfm");
  mfm_err err;
  CHECK(write_model(good, 0, &err) == MFM_OK);
  size_t n;
  unsigned char *b = slurp(good, &n);
  if (!b) return;
  int refused = 0, total = 0;
  for (size_t i = 0; i < n; i++) {
    for (int bit = 0; bit < 8; bit++) {
      b[i] ^= (unsigned char)(1u << bit);
      spit(path, b, n);
      mfm_mfile *f = NULL;
      mfm_status st = mfm_mfile_open(path, MFM_MFILE_READ, &f, &err);
      refused += st == MFM_EFORMAT && f == NULL && strstr(err.msg, path);
      total++;
      mfm_mfile_free(f);
      b[i] ^= (unsigned char)(1u << bit);
    }
  }
  CHECK(refused == total);
  /* A flip in the data says "checksum". */
  b[n - 100] ^= 4;
  spit(path, b, n);
  mfm_mfile *f;
  CHECK(mfm_mfile_open(path, MFM_MFILE_MAP, &f, &err) == MFM_EFORMAT);
  CHECK(strstr(err.msg, "checksum mismatch") != NULL);
  free(b);
}

/* A forged file: patch a field, fix the checksum, expect `want` in the
   message. */
typedef void (*patch_fn)(unsigned char *b, size_t n);

static void expect_refused(const char *what, patch_fn patch,
                           const char *want) {
  char good[600], path[600];
  path_in(good, sizeof good, tmpdir, "good.moonfm");
  path_in(path, sizeof path, tmpdir, "forged.moonfm");
  mfm_err err;
  size_t n;
  unsigned char *b = slurp(good, &n);
  if (!b) return;
  patch(b, n);
  fix_crc(b, n);
  spit(path, b, n);
  free(b);
  for (int mode = 0; mode < 2; mode++) {
    mfm_mfile *f = NULL;
    mfm_status st = mfm_mfile_open(path, (mfm_mfile_mode)mode, &f, &err);
    int ok = st == MFM_EFORMAT && f == NULL && strstr(err.msg, want) &&
             strstr(err.msg, path);
    if (!ok) fprintf(stderr, "%s: got '%s'\n", what, err.msg);
    CHECK(ok);
    mfm_mfile_free(f);
  }
}

/* Directory entry i of the test model: at 64 + align(header). */
static unsigned char *entry_at(unsigned char *b, int i) {
  return b + rd64(b + 40) + 96 * (size_t)i;
}

static void p_version(unsigned char *b, size_t n) { wr32(b + 8, 7); }
static void p_flags(unsigned char *b, size_t n) { wr32(b + 12, 0x10); }
static void p_hoff(unsigned char *b, size_t n) { wr64(b + 24, 128); }
static void p_hlen(unsigned char *b, size_t n) { wr64(b + 32, 1u << 30); }
static void p_hlen2(unsigned char *b, size_t n) { wr64(b + 32, 100); }
static void p_narr(unsigned char *b, size_t n) { wr32(b + 48, 1000); }
static void p_esz(unsigned char *b, size_t n) { wr32(b + 52, 64); }
static void p_res(unsigned char *b, size_t n) { b[60] = 1; }
static void p_trailer_res(unsigned char *b, size_t n) { b[n - 12] = 1; }
static void p_rows(unsigned char *b, size_t n) {
  wr64(entry_at(b, 1) + 56, NI + 1);
}
static void p_neg_rows(unsigned char *b, size_t n) {
  wr64(entry_at(b, 1) + 56, (uint64_t)-1);
}
static void p_huge(unsigned char *b, size_t n) {
  /* rows * cols * 4 overflows 64 bits */
  wr64(entry_at(b, 1) + 56, (uint64_t)1 << 40);
  wr64(entry_at(b, 1) + 64, (uint64_t)1 << 40);
}
static void p_past_end(unsigned char *b, size_t n) {
  unsigned char *e = entry_at(b, 1);
  wr64(e + 56, 1000);
  wr64(e + 80, 1000 * K * 4);
}
static void p_offset_end(unsigned char *b, size_t n) {
  wr64(entry_at(b, 5) + 72, (uint64_t)n - 16); /* the trailer */
}
static void p_offset_wrap(unsigned char *b, size_t n) {
  wr64(entry_at(b, 5) + 72, UINT64_MAX - 63);
}
static void p_misalign(unsigned char *b, size_t n) {
  unsigned char *e = entry_at(b, 1);
  wr64(e + 72, rd64(e + 72) + 4);
}
static void p_overlap(unsigned char *b, size_t n) {
  wr64(entry_at(b, 1) + 72, rd64(entry_at(b, 0) + 72));
}
static void p_dtype(unsigned char *b, size_t n) {
  wr32(entry_at(b, 2) + 48, 42);
}
static void p_dup(unsigned char *b, size_t n) {
  memcpy(entry_at(b, 1), "user_factors\0\0", 14);
}
static void p_noterm(unsigned char *b, size_t n) {
  memset(entry_at(b, 0), 'a', 48);
}
static void p_noname(unsigned char *b, size_t n) {
  memset(entry_at(b, 0), 0, 48);
}
static void p_namegarbage(unsigned char *b, size_t n) {
  entry_at(b, 0)[47] = 'z';
}
static void p_entry_res(unsigned char *b, size_t n) {
  entry_at(b, 0)[90] = 1;
}

/* A NaN at row 2 of item_factors (3 columns), with a valid checksum. */
static void p_nan(unsigned char *b, size_t n) {
  unsigned char *e = entry_at(b, 1);
  float v = NAN;
  memcpy(b + rd64(e + 72) + 4 * 2 * rd64(e + 64), &v, 4);
}

static void test_forged(void) {
  char good[600];
  path_in(good, sizeof good, tmpdir, "good.moonfm");
  mfm_err err;
  CHECK(write_model(good, 0, &err) == MFM_OK);
  expect_refused("version", p_version, "unsupported format version 7");
  expect_refused("flags", p_flags, "unknown flags 0x10");
  expect_refused("header offset", p_hoff, "header offset");
  expect_refused("header length", p_hlen, "JSON header");
  expect_refused("header length 2", p_hlen2, "directory offset");
  expect_refused("array count", p_narr, "directory of 1000 arrays");
  expect_refused("entry size", p_esz, "entry size");
  expect_refused("reserved", p_res, "reserved");
  expect_refused("trailer reserved", p_trailer_res, "reserved");
  expect_refused("rows", p_rows, "'item_factors': shape 8 x 3 does not match");
  expect_refused("negative rows", p_neg_rows, "'item_factors': shape -1");
  expect_refused("overflow", p_huge, "'item_factors': shape");
  expect_refused("past end", p_past_end,
                 "array 'item_factors' runs past the end of the file");
  expect_refused("offset at end", p_offset_end, "'users.ids' runs past");
  expect_refused("offset wraps", p_offset_wrap, "'users.ids' runs past");
  expect_refused("misaligned", p_misalign, "misaligned");
  expect_refused("overlap", p_overlap, "overlaps");
  expect_refused("dtype", p_dtype, "'user_bias': unknown dtype 42");
  expect_refused("duplicate", p_dup, "'user_factors' appears twice");
  expect_refused("unterminated", p_noterm, "not NUL-terminated");
  expect_refused("empty name", p_noname, "name is empty");
  expect_refused("name garbage", p_namegarbage, "bytes after the name");
  expect_refused("entry reserved", p_entry_res, "reserved fields");
  expect_refused("nan", p_nan,
                 "'item_factors' holds a value that is not finite (row 2)");
}

/* A model with a NaN or an infinity is not written (a diverged training,
   which would otherwise be served as nulls), and nothing is left. */
static void test_nonfinite(void) {
  char dir[560], path[600];
  path_in(dir, sizeof dir, tmpdir, "nonfinite");
  mkdir(dir, 0755);
  path_in(path, sizeof path, dir, "model.moonfm");
  float v[5000 * 2];
  for (int i = 0; i < 10000; i++) v[i] = (float)i;
  mfm_array a;
  memset(&a, 0, sizeof a);
  strcpy(a.name, "user_factors");
  a.dtype = MFM_F32;
  a.rows = 5000;
  a.cols = 2;
  a.data = v;
  mfm_err err;
  CHECK(mfm_mfile_write(path, 0, "{}", 2, &a, 1, &err) == MFM_OK);
  float bad[] = {INFINITY, -INFINITY, NAN};
  for (int k = 0; k < 3; k++) {
    v[2 * 4711 + 1] = bad[k];
    mfm_status st = mfm_mfile_write(path, 0, "{}", 2, &a, 1, &err);
    int ok = st == MFM_EINVAL &&
             strstr(err.msg, "'user_factors' holds a value that is not "
                             "finite (row 4711)") != NULL;
    if (!ok) fprintf(stderr, "nonfinite %d: status %d, '%s'\n", k, st, err.msg);
    CHECK(ok);
    CHECK(count_tmp(dir) == 0);
  }
  /* The file written before is intact. */
  mfm_mfile *f;
  CHECK(mfm_mfile_open(path, MFM_MFILE_READ, &f, &err) == MFM_OK);
  mfm_mfile_free(f);
}

/* Failed writes leave the previous file as it was and no temporaries. */
static void check_failed_write(const char *dir, const char *path,
                               const char *label) {
  mfm_err err;
  static float big[64 * 1024];
  mfm_array a;
  memset(&a, 0, sizeof a);
  strcpy(a.name, "big");
  a.dtype = MFM_F32;
  a.rows = 64 * 1024;
  a.cols = 1;
  a.data = big;
  mfm_status st = mfm_mfile_write(path, 0, "{}", 2, &a, 1, &err);
  int ok = st == MFM_EIO && strstr(err.msg, path) != NULL;
  if (!ok) fprintf(stderr, "%s: status %d, '%s'\n", label, st, err.msg);
  CHECK(ok);
  CHECK(count_tmp(dir) == 0);
  mfm_mfile *f;
  CHECK(mfm_mfile_open(path, MFM_MFILE_READ, &f, &err) == MFM_OK);
  if (f) {
    CHECK(mfm_mfile_count(f) == 6);
    mfm_mfile_free(f);
  }
  /* Same for the .npy export. */
  char npy[700];
  snprintf(npy, sizeof npy, "%s/x.npy", dir);
  CHECK(mfm_npy_write_f32(npy, NULL, 2, 100000, 4, 4, &err) == MFM_EIO);
  CHECK(strstr(err.msg, npy) != NULL);
  CHECK(count_tmp(dir) == 0 && access(npy, F_OK) != 0);
}

static void test_disk_full(void) {
  char dir[600], path[700];
  path_in(dir, sizeof dir, tmpdir, "tmpfs");
  mkdir(dir, 0755);
  if (mount("tmpfs", dir, "tmpfs", 0, "size=64k") != 0) {
    printf("mfile: tmpfs mount not permitted (%s); the file-size limit "
           "test stands in\n", strerror(errno));
    return;
  }
  snprintf(path, sizeof path, "%s/model.moonfm", dir);
  mfm_err err;
  CHECK(write_model(path, 0, &err) == MFM_OK);
  check_failed_write(dir, path, "tmpfs");
  umount(dir);
  rmdir(dir);
}

static void test_file_size_limit(void) {
  char dir[600], path[700];
  path_in(dir, sizeof dir, tmpdir, "limit");
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/model.moonfm", dir);
  mfm_err err;
  CHECK(write_model(path, 0, &err) == MFM_OK);
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = 32 * 1024;
  signal(SIGXFSZ, SIG_IGN); /* write() then fails with EFBIG */
  CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  check_failed_write(dir, path, "file size limit");
  setrlimit(RLIMIT_FSIZE, &old);
}

static void test_alloc_failures(void) {
  char path[600];
  path_in(path, sizeof path, tmpdir, "alloc.moonfm");
  mfm_err err;
  CHECK(write_model(path, 0, &err) == MFM_OK);
  int nomem = 0, ok = 0, other = 0;
  for (size_t nth = 1; nth < 40; nth++) {
    mfm_alloc_fail_at(nth);
    mfm_status st = write_model(path, 0, &err);
    mfm_alloc_fail_at(0);
    /* fileio's folder sync reports its own allocation failure as EIO,
       after the rename: the file is complete then. */
    if (st == MFM_EIO && strstr(err.msg, "sync the folder")) st = MFM_ENOMEM;
    if (st == MFM_OK) ok++; else if (st == MFM_ENOMEM) nomem++; else other++;
    if (st != MFM_OK && st != MFM_ENOMEM)
      fprintf(stderr, "write %zu: %s\n", nth, err.msg);
    for (int mode = 0; mode < 2; mode++) {
      mfm_mfile *f = NULL;
      mfm_alloc_fail_at(nth);
      st = mfm_mfile_open(path, (mfm_mfile_mode)mode, &f, &err);
      mfm_alloc_fail_at(0);
      if (st == MFM_OK) ok++; else if (st == MFM_ENOMEM) nomem++; else other++;
      if (st != MFM_OK && st != MFM_ENOMEM)
        fprintf(stderr, "open %zu: %s\n", nth, err.msg);
      CHECK((st == MFM_OK) == (f != NULL));
      mfm_mfile_free(f);
    }
  }
  CHECK(nomem > 0 && ok > 0 && other == 0);
  CHECK(count_tmp(tmpdir) == 0);
}

static void test_npy(void) {
  char path[600];
  path_in(path, sizeof path, tmpdir, "m.npy");
  float m[4 * 5];
  for (int i = 0; i < 20; i++) m[i] = (float)i + 0.5f;
  mfm_err err;
  /* 4 x 3 out of rows 5 apart */
  CHECK(mfm_npy_write_f32(path, m, 2, 4, 3, 5, &err) == MFM_OK);
  size_t n;
  unsigned char *b = slurp(path, &n);
  CHECK(b && n == 128 + 4 * 3 * 4);
  if (b) {
    CHECK(memcmp(b, "\x93NUMPY\x01\x00", 8) == 0);
    size_t hl = b[8] | ((size_t)b[9] << 8);
    CHECK(10 + hl == 128 && b[127] == '\n');
    CHECK(strstr((char *)b + 10, "'descr': '<f4'") != NULL);
    CHECK(strstr((char *)b + 10, "'shape': (4, 3)") != NULL);
    CHECK(strstr((char *)b + 10, "'fortran_order': False") != NULL);
    const float *d = (const float *)(b + 128);
    int same = 1;
    for (int r = 0; r < 4; r++)
      for (int c = 0; c < 3; c++) same &= d[r * 3 + c] == m[r * 5 + c];
    CHECK(same);
    free(b);
  }
  CHECK(mfm_npy_write_f32(path, NULL, 1, 6, 0, 0, &err) == MFM_OK);
  b = slurp(path, &n);
  CHECK(b && n == 128 + 24);
  if (b) {
    CHECK(strstr((char *)b + 10, "'shape': (6,)") != NULL);
    int zero = 1;
    for (size_t i = 128; i < n; i++) zero &= b[i] == 0;
    CHECK(zero);
    free(b);
  }
  CHECK(mfm_npy_write_f32(path, m, 2, 4, 6, 5, &err) == MFM_EINVAL);
  CHECK(mfm_npy_write_f32(path, m, 3, 4, 3, 5, &err) == MFM_EINVAL);
  char head[128];
  CHECK(mfm_npy_header(head, sizeof head, 2, 0, 64) == 128);
  CHECK(mfm_npy_header(head, 10, 2, 0, 64) == 0);

  /* Id lists as text. */
  path_in(path, sizeof path, tmpdir, "ids.txt");
  CHECK(mfm_ids_write_text(path, ids, offs, 3, &err) == MFM_OK);
  b = slurp(path, &n);
  CHECK(b && n == 12 && memcmp(b, "u1\nu22\nu333\n", 12) == 0);
  free(b);
  CHECK(mfm_ids_write_text(path, "", offs, 0, &err) == MFM_OK);
  b = slurp(path, &n);
  CHECK(b && n == 0);
  free(b);
  int64_t o2[3] = {0, 2, 4};
  CHECK(mfm_ids_write_text(path, "a\nbc", o2, 2, &err) == MFM_EINVAL);
  CHECK(strstr(err.msg, "newline") != NULL);
  CHECK(count_tmp(tmpdir) == 0);
}

int main(void) {
  const char *base = getenv("MFM_TEST_TMP");
  if (!base) base = "/tmp";
  mkdir(base, 0755);
  snprintf(tmpdir, sizeof tmpdir, "%s/mfile-XXXXXX", base);
  if (!mkdtemp(tmpdir)) {
    perror(tmpdir);
    return 1;
  }
  test_roundtrip();
  test_bad_args();
  test_truncation();
  test_bitflips();
  test_forged();
  test_nonfinite();
  test_disk_full();
  test_file_size_limit();
  test_alloc_failures();
  test_npy();
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  DONE("mfile");
}
