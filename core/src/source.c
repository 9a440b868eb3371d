/* Byte sources: raw reads from a file or FIFO, optional RecordIO framing,
   per-document gzip detection, and a newline at the end of every
   document.  Sequential only (FastFile and pipes allow nothing else). */
#include "moonfm/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "moonfm/alloc.h"
#include "moonfm/stop.h"

#define RECORDIO_MAGIC 0xCED7230Au

struct mfm_source {
  int fd;
  int stream;         /* FIFO or other non-regular file: poll before read */
  int fifo;
  int record_io;
  char name[160];     /* for messages */
  char *rbuf;         /* raw bytes rbuf[rpos, rlen) not yet used */
  size_t rcap, rpos, rlen;
  int raw_eof;
  uint64_t raw_bytes; /* raw bytes read so far */
  uint64_t size;      /* a regular file's size, else 0 */
  uint64_t raw_used;  /* raw bytes consumed (for offsets in messages) */
  /* The current document. */
  int in_doc, doc_started_any, done;
  int gzip, saw_gzip, z_init, z_end;
  z_stream z;
  uint64_t rec_left;  /* RecordIO: payload bytes left in this part */
  int rec_last;       /* RecordIO: this part ends the document */
  uint32_t rec_pad;   /* RecordIO: padding after this part */
  int64_t records;    /* RecordIO: records started */
  char last;          /* last byte given out in this document */
  int any;            /* bytes were given out in this document */
};

static mfm_status source_new(int fd, const char *name,
                             const mfm_source_opts *opts, mfm_source **out,
                             mfm_err *err) {
  struct stat st;
  *out = NULL;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return mfm_err_set(err, MFM_EIO, "%s: %s", name, strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return mfm_err_set(err, MFM_EIO, "%s: is a directory, not a file", name);
  }
  mfm_source *s = mfm_calloc(1, sizeof *s);
  size_t block = opts && opts->block ? opts->block : (size_t)4 << 20;
  if (block < 16) block = 16;
  if (s) s->rbuf = mfm_malloc(block);
  if (!s || !s->rbuf) {
    if (s) mfm_free(s);
    close(fd);
    return mfm_err_set(err, MFM_ENOMEM, "out of memory opening %s", name);
  }
  s->fd = fd;
  s->rcap = block;
  s->fifo = S_ISFIFO(st.st_mode);
  s->stream = !S_ISREG(st.st_mode);
  s->size = S_ISREG(st.st_mode) && st.st_size > 0 ? (uint64_t)st.st_size : 0;
  s->record_io = opts ? opts->record_io : 0;
  snprintf(s->name, sizeof s->name, "%s", name ? name : "(input)");
  if (!s->stream) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
  }
  *out = s;
  return MFM_OK;
}

mfm_status mfm_source_open_fd(int fd, const char *name,
                              const mfm_source_opts *opts, mfm_source **out,
                              mfm_err *err) {
  return source_new(fd, name, opts, out, err);
}

mfm_status mfm_source_open(const char *path, const mfm_source_opts *opts,
                           mfm_source **out, mfm_err *err) {
  *out = NULL;
  /* O_NONBLOCK: opening a FIFO must not wait for its writer here; the
     waiting happens in poll(), where the stop flag is seen. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return mfm_err_set(err, MFM_EIO, "cannot open %s: %s", path,
                       strerror(errno));
  return source_new(fd, path, opts, out, err);
}

void mfm_source_free(mfm_source *s) {
  if (!s) return;
  if (s->z_init) inflateEnd(&s->z);
  if (s->fd >= 0) close(s->fd);
  mfm_free(s->rbuf);
  mfm_free(s);
}

uint64_t mfm_source_raw_bytes(const mfm_source *s) { return s->raw_bytes; }
int mfm_source_is_fifo(const mfm_source *s) { return s->fifo; }
int mfm_source_saw_gzip(const mfm_source *s) { return s->saw_gzip; }
uint64_t mfm_source_size(const mfm_source *s) { return s->size; }

/* One read(2) of up to n bytes into p: EINTR retried; on a stream, waits
   in poll() 100 ms at a time and gives up when the stop flag is raised.
   *got = 0 is the end of the input. */
static mfm_status raw_read(mfm_source *s, char *p, size_t n, size_t *got,
                           mfm_err *err) {
  *got = 0;
  if (s->raw_eof) return MFM_OK;
  for (;;) {
    if (s->stream) {
      struct pollfd pf = {s->fd, POLLIN, 0};
      int r = poll(&pf, 1, 100);
      if (r < 0 && errno != EINTR)
        return mfm_err_set(err, MFM_EIO, "%s: poll: %s", s->name,
                           strerror(errno));
      if (r <= 0) {
        if (mfm_stop_requested())
          return mfm_err_set(err, MFM_ECANCELED, "%s: stopped while "
                             "reading", s->name);
        continue;
      }
    }
    ssize_t k = read(s->fd, p, n);
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        if (mfm_stop_requested())
          return mfm_err_set(err, MFM_ECANCELED, "%s: stopped while "
                             "reading", s->name);
        continue;
      }
      return mfm_err_set(err, MFM_EIO, "%s: read error at byte %llu: %s",
                         s->name, (unsigned long long)s->raw_bytes,
                         strerror(errno));
    }
    if (k == 0) s->raw_eof = 1;
    s->raw_bytes += (uint64_t)k;
    *got = (size_t)k;
    return MFM_OK;
  }
}

/* Makes at least k (<= most <= rcap) raw bytes available in rbuf unless
   the input ends first, filling no more than the first most bytes. */
static mfm_status raw_fill(mfm_source *s, size_t k, size_t most,
                           mfm_err *err) {
  while (s->rlen - s->rpos < k && !s->raw_eof) {
    if (s->rpos > 0) {
      memmove(s->rbuf, s->rbuf + s->rpos, s->rlen - s->rpos);
      s->rlen -= s->rpos;
      s->rpos = 0;
    }
    size_t got;
    mfm_status st = raw_read(s, s->rbuf + s->rlen, most - s->rlen, &got,
                             err);
    if (st != MFM_OK) return st;
    s->rlen += got;
  }
  return MFM_OK;
}

static mfm_status raw_ensure(mfm_source *s, size_t k, mfm_err *err) {
  return raw_fill(s, k, s->rcap, err);
}

static void raw_skip(mfm_source *s, size_t k) {
  s->rpos += k;
  s->raw_used += k;
}

static uint32_t le32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
         (uint32_t)u[3] << 24;
}

/* Reads the next RecordIO header.  *more = 0 at a clean end of input.
   `cont`: a multi-part record is open, so a middle or last part must
   follow. */
static mfm_status recordio_header(mfm_source *s, int cont, int *more,
                                  mfm_err *err) {
  mfm_status st = raw_ensure(s, 8, err);
  if (st != MFM_OK) return st;
  size_t have = s->rlen - s->rpos;
  *more = 0;
  if (have == 0 && !cont) return MFM_OK;
  if (have < 8)
    return mfm_err_set(err, MFM_EFORMAT, "%s: RecordIO: truncated record "
                       "header at byte %llu", s->name,
                       (unsigned long long)s->raw_used);
  uint32_t magic = le32(s->rbuf + s->rpos);
  uint32_t h = le32(s->rbuf + s->rpos + 4);
  if (magic != RECORDIO_MAGIC)
    return mfm_err_set(err, MFM_EFORMAT, "%s: RecordIO: bad magic 0x%08x at "
                       "byte %llu (expected 0xced7230a; is the channel's "
                       "RecordWrapperType right?)", s->name, magic,
                       (unsigned long long)s->raw_used);
  uint32_t flag = h >> 29, len = h & ((1u << 29) - 1);
  int ok = cont ? (flag == 2 || flag == 3) : (flag == 0 || flag == 1);
  if (flag > 3 || !ok)
    return mfm_err_set(err, MFM_EFORMAT, "%s: RecordIO: unexpected "
                       "continuation flag %u at byte %llu (%s)", s->name,
                       flag, (unsigned long long)s->raw_used,
                       cont ? "a multi-part record is not finished"
                            : "no multi-part record is open");
  raw_skip(s, 8);
  s->rec_left = len;
  s->rec_pad = (4 - len % 4) % 4;
  s->rec_last = flag == 0 || flag == 3;
  if (!cont) s->records++;
  *more = 1;
  return MFM_OK;
}

/* Points *p at the next raw payload bytes of the current document (at
   most max); *len = 0 at the end of the document. */
static mfm_status payload(mfm_source *s, const char **p, size_t *len,
                          size_t max, mfm_err *err) {
  mfm_status st;
  *len = 0;
  if (!s->record_io) {
    if (s->rpos == s->rlen) {
      s->rpos = s->rlen = 0;
      st = raw_ensure(s, 1, err);
      if (st != MFM_OK) return st;
    }
    size_t k = s->rlen - s->rpos;
    if (k > max) k = max;
    *p = s->rbuf + s->rpos;
    *len = k;
    raw_skip(s, k);
    return MFM_OK;
  }
  while (s->rec_left == 0) {
    /* End of a part: its padding, then the next part or the end. */
    if (s->rec_pad) {
      st = raw_ensure(s, s->rec_pad, err);
      if (st != MFM_OK) return st;
      size_t k = s->rlen - s->rpos;
      raw_skip(s, k < s->rec_pad ? k : s->rec_pad); /* lenient at EOF */
      s->rec_pad = 0;
    }
    if (s->rec_last) return MFM_OK;
    int more;
    st = recordio_header(s, 1, &more, err);
    if (st != MFM_OK) return st;
  }
  if (s->rpos == s->rlen) {
    st = raw_ensure(s, 1, err);
    if (st != MFM_OK) return st;
    if (s->rpos == s->rlen)
      return mfm_err_set(err, MFM_EFORMAT, "%s: RecordIO: truncated record "
                         "(record %lld ends early at byte %llu, %llu bytes "
                         "missing)", s->name, (long long)s->records,
                         (unsigned long long)s->raw_used,
                         (unsigned long long)s->rec_left);
  }
  size_t k = s->rlen - s->rpos;
  if (k > s->rec_left) k = (size_t)s->rec_left;
  if (k > max) k = max;
  *p = s->rbuf + s->rpos;
  *len = k;
  raw_skip(s, k);
  s->rec_left -= k;
  return MFM_OK;
}

/* Starts the next document; *more = 0 at the end of the input. */
static mfm_status doc_start(mfm_source *s, int *more, mfm_err *err) {
  mfm_status st;
  *more = 0;
  if (s->record_io) {
    s->rec_last = 0;
    st = recordio_header(s, 0, more, err);
    if (st != MFM_OK || !*more) return st;
    size_t want = s->rec_left < 2 ? (size_t)s->rec_left : 2;
    st = raw_ensure(s, want, err);
    if (st != MFM_OK) return st;
    s->gzip = s->rec_left >= 2 && s->rlen - s->rpos >= 2 &&
              (unsigned char)s->rbuf[s->rpos] == 0x1f &&
              (unsigned char)s->rbuf[s->rpos + 1] == 0x8b;
  } else {
    if (s->doc_started_any) return MFM_OK;
    /* Two bytes tell gzip; a plain file then reads straight into the
       caller's buffer, so most of rbuf is never touched (4 MB less
       resident memory). */
    st = raw_fill(s, 2, s->rcap < 65536 ? s->rcap : 65536, err);
    if (st != MFM_OK) return st;
    *more = 1;
    s->gzip = s->rlen - s->rpos >= 2 &&
              (unsigned char)s->rbuf[s->rpos] == 0x1f &&
              (unsigned char)s->rbuf[s->rpos + 1] == 0x8b;
  }
  s->doc_started_any = 1;
  s->in_doc = 1;
  s->any = 0;
  s->last = '\n';
  if (s->gzip) {
    s->saw_gzip = 1;
    if (!s->z_init) {
      memset(&s->z, 0, sizeof s->z);
      if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK)
        return mfm_err_set(err, MFM_ENOMEM, "%s: cannot start gzip",
                           s->name);
      s->z_init = 1;
    } else {
      inflateReset(&s->z);
    }
    s->z.avail_in = 0;
    s->z_end = 0;
  }
  return MFM_OK;
}

/* Decoded bytes of the current document into buf; *n = 0 at its end. */
static mfm_status doc_read(mfm_source *s, char *buf, size_t cap, size_t *n,
                           mfm_err *err) {
  mfm_status st;
  *n = 0;
  if (!s->gzip) {
    /* Plain file, nothing buffered: read straight into the caller's
       buffer and save a copy. */
    if (!s->record_io && s->rpos == s->rlen) {
      size_t got;
      st = raw_read(s, buf, cap, &got, err);
      if (st != MFM_OK) return st;
      s->raw_used += got;
      *n = got;
      return MFM_OK;
    }
    const char *p;
    size_t k;
    st = payload(s, &p, &k, cap, err);
    if (st != MFM_OK) return st;
    if (k) memcpy(buf, p, k); /* an empty record has no payload pointer */
    *n = k;
    return MFM_OK;
  }
  s->z.next_out = (Bytef *)buf;
  s->z.avail_out = (uInt)(cap > (1u << 30) ? (1u << 30) : cap);
  while (s->z.avail_out > 0) {
    if (s->z.avail_in == 0) {
      const char *p;
      size_t k;
      st = payload(s, &p, &k, (size_t)1 << 30, err);
      if (st != MFM_OK) return st;
      if (k == 0) {
        if (!s->z_end)
          return mfm_err_set(err, MFM_EFORMAT, "%s: gzip data ends early at "
                             "byte %llu (truncated file?)", s->name,
                             (unsigned long long)s->raw_used);
        break;
      }
      s->z.next_in = (Bytef *)p;
      s->z.avail_in = (uInt)k;
    }
    if (s->z_end) {
      /* More bytes after a member: another gzip member follows. */
      inflateReset(&s->z);
      s->z_end = 0;
    }
    uInt before = s->z.avail_out;
    int r = inflate(&s->z, Z_NO_FLUSH);
    if (r == Z_STREAM_END) {
      s->z_end = 1;
    } else if (r == Z_BUF_ERROR && s->z.avail_out != before) {
      /* progress was made */
    } else if (r != Z_OK && r != Z_BUF_ERROR) {
      if (r == Z_MEM_ERROR)
        return mfm_err_set(err, MFM_ENOMEM, "%s: out of memory in gzip",
                           s->name);
      return mfm_err_set(err, MFM_EFORMAT, "%s: bad gzip data near byte "
                         "%llu: %s", s->name,
                         (unsigned long long)(s->raw_used - s->z.avail_in),
                         s->z.msg ? s->z.msg : "corrupt stream");
    }
    if (s->z.avail_out != before) break; /* give back what we have */
  }
  *n = (size_t)(s->z.next_out - (Bytef *)buf);
  return MFM_OK;
}

mfm_status mfm_source_read(mfm_source *s, char *buf, size_t cap, size_t *n,
                           int *doc_end, mfm_err *err) {
  mfm_status st;
  *n = 0;
  if (doc_end) *doc_end = 0;
  if (cap == 0) return MFM_OK;
  while (!s->done) {
    if (!s->in_doc) {
      int more;
      st = doc_start(s, &more, err);
      if (st != MFM_OK) return st;
      if (!more) {
        s->done = 1;
        break;
      }
    }
    size_t k;
    st = doc_read(s, buf, cap, &k, err);
    if (st != MFM_OK) return st;
    if (k > 0) {
      s->any = 1;
      s->last = buf[k - 1];
      *n = k;
      return MFM_OK;
    }
    /* End of the document: close its last line. */
    s->in_doc = 0;
    if (doc_end) *doc_end = 1;
    if (s->any && s->last != '\n') {
      buf[0] = '\n';
      *n = 1;
      return MFM_OK;
    }
    if (doc_end) return MFM_OK;
  }
  return MFM_OK;
}
