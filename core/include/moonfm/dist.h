/* Multi-host training on Open MPI: the few collectives moonfm needs.

   MPI is process-wide, so this module is too: one communicator (all the
   ranks of the job), set up by mfm_dist_init and torn down by
   mfm_dist_finalize.  A process not started by mpirun (no
   OMPI_COMM_WORLD_SIZE in its environment), or a build without MPI, is a
   job of one rank: every collective is then a no-op, so callers need no
   special case.

   Hangs: MPI blocks forever on a peer that stopped answering.  Every
   collective here runs under a watchdog: when one does not complete
   within the timeout given to mfm_dist_init, the watchdog prints one
   clear line to stderr and ends the process (status 1); mpirun then ends
   every other rank (orte_abort_on_non_zero_status), so no host waits
   forever.  A rank that dies outright is noticed by mpirun at once.

   Errors of MPI calls come back as MFM_EIO with MPI's own text (the
   communicator uses MPI_ERRORS_RETURN).  Not thread-safe: collectives are
   called from the main thread only (MPI_THREAD_FUNNELED). */
#ifndef MOONFM_DIST_H
#define MOONFM_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "als.h"
#include "factors.h"
#include "status.h"

/* 1 when libmoonfm was built with MPI. */
int mfm_dist_available(void);

/* Joins the MPI job when the process runs under mpirun, else sets up a
   job of one rank.  timeout_s > 0 bounds every collective (see above);
   label (borrowed, copied; may be NULL) names this rank in the
   watchdog's message, e.g. the host name.  Calling it again is a no-op.
   MFM_EIO when MPI cannot start. */
mfm_status mfm_dist_init(double timeout_s, const char *label, mfm_err *err);
/* Leaves the job (MPI_Finalize); safe without init, and twice. */
void mfm_dist_finalize(void);
/* Ends every rank of the job now with status code (MPI_Abort). */
void mfm_dist_abort(int code);

int mfm_dist_rank(void); /* 0 without a job */
int mfm_dist_size(void); /* 1 without a job */
/* Changes the watchdog timeout (seconds, > 0). */
void mfm_dist_set_timeout(double timeout_s);

/* In-place sums over all ranks of n values. */
mfm_status mfm_dist_sum_f32(float *buf, size_t n, mfm_err *err);
mfm_status mfm_dist_sum_f64(double *buf, size_t n, mfm_err *err);
mfm_status mfm_dist_sum_i64(int64_t *buf, size_t n, mfm_err *err);
/* In-place reduction over all ranks of n doubles: sum, maximum or
   minimum (e.g. a per-item flag array reduced with the maximum). */
typedef enum mfm_dist_op { MFM_DIST_SUM, MFM_DIST_MAX, MFM_DIST_MIN } mfm_dist_op;
mfm_status mfm_dist_reduce_f64(double *buf, size_t n, mfm_dist_op op,
                               mfm_err *err);
/* Maximum over all ranks of one int (a collective "any" for flags). */
mfm_status mfm_dist_max_int(int *v, mfm_err *err);

/* In-place gather of row blocks: rank r owns rows [offsets[r],
   offsets[r + 1]) of a matrix of row_len floats per row held in buf
   (offsets has size + 1 entries, borrowed); afterwards every rank holds
   every block. */
mfm_status mfm_dist_allgather_rows(float *buf, size_t row_len,
                                   const int64_t *offsets, mfm_err *err);

/* Broadcasts n bytes of buf from rank root. */
mfm_status mfm_dist_bcast(void *buf, size_t n, int root, mfm_err *err);

mfm_status mfm_dist_barrier(mfm_err *err);

/* The contiguous block [*lo, *hi) of n items owned by `rank` of `size`
   (the first n % size ranks get one more). */
void mfm_dist_block(int64_t n, int rank, int size, int64_t *lo, int64_t *hi);

/* Resolves a host name (getaddrinfo), retrying with exponential back-off
   from 100 ms, capped at 30 s between tries, for up to max_s seconds
   (spec rule 98).  MFM_ECANCELED when the stop flag is raised meanwhile,
   MFM_EIO (naming the host and the resolver's last answer) when it never
   resolves.  addr (may be NULL) gets the first address as text. */
mfm_status mfm_dist_resolve(const char *host, double max_s, char *addr,
                            size_t addr_len, mfm_err *err);

/* ---- Models ------------------------------------------------------------ */

/* Distributed ALS: `iterations` iterations over every rank of the job.
   Each rank solves its block of users (mfm_dist_block of n_users) and of
   items; ui must hold every interaction of this rank's users and iu
   (users of each item) every interaction of its items (both borrowed;
   other rows are not read).  Every rank must call it with the same model
   shape, parameters and seed; afterwards every rank holds the whole
   model.  The report is the same on every rank.  MFM_ECANCELED when any
   rank was stopped (all ranks return it at the same point). */
mfm_status mfm_dist_als_fit(mfm_als *m, const mfm_csr *ui,
                            const mfm_csr *iu, int32_t iterations,
                            mfm_als_report *report, mfm_err *err);

/* Model averaging for data-parallel training (see dist_avg.c): keeps a
   copy of the float32 arrays (other dtypes are left alone), and sync
   replaces each array row by the starting copy plus the mean change of
   the ranks whose copy of that row changed, then takes the result as the
   next starting point.  The arrays (borrowed) must stay valid and keep
   their shapes while the object lives; every rank lists the same arrays. */
#define MFM_DIST_AVG_MAX 32
typedef struct mfm_dist_avg mfm_dist_avg;
mfm_status mfm_dist_avg_new(const mfm_array *arrays, int n,
                            mfm_dist_avg **out, mfm_err *err);
mfm_status mfm_dist_avg_sync(mfm_dist_avg *a, mfm_err *err);
void mfm_dist_avg_free(mfm_dist_avg *a);

#endif
