/* libFuzzer target: the model and checkpoint loader.  The input is a
   model file; it is opened read and mapped, its factors view taken, and
   loaded as a serving model folder. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moonfm/alloc.h"
#include "moonfm/mfile.h"
#include "moonfm/serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256], path[300];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mfm_err err;
  FILE *f;
  int mode;
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/moonfm-fuzz-mfile-%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/model.moonfm", dir);
  }
  f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  for (mode = 0; mode < 2; mode++) {
    mfm_mfile *m = NULL;
    if (mfm_mfile_open(path, (mfm_mfile_mode)mode, &m, &err) == MFM_OK) {
      mfm_mfile_names names = mfm_mfile_names_default();
      mfm_factors fa;
      size_t hl;
      int i, n = mfm_mfile_count(m);
      mfm_mfile_header(m, &hl);
      for (i = 0; i < n; i++) {
        mfm_array a;
        mfm_mfile_array(m, i, &a);
      }
      mfm_mfile_factors(m, &names, &fa, &err);
    }
    mfm_mfile_free(m);
  }
  {
    mfm_serve_model *sm = NULL;
    if (mfm_serve_model_load(dir, &sm, &err) == MFM_OK) {
      mfm_serve_worker *w = NULL;
      if (mfm_serve_worker_new(sm, &w, &err) == MFM_OK) {
        mfm_serve_reply r;
        const char *b = "{\"user\":\"u1\",\"k\":3}";
        mfm_serve_invoke(w, b, strlen(b), "application/json", NULL, NULL,
                         &r);
        mfm_free(r.body);
      }
      mfm_serve_worker_free(w);
    }
    mfm_serve_model_free(sm);
  }
  return 0;
}
