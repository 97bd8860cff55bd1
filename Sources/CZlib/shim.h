#ifndef LOCKSTEP_CZLIB_SHIM_H
#define LOCKSTEP_CZLIB_SHIM_H
#include <zlib.h>

/* inflateInit2 is a macro, which Swift cannot call: this starts a raw deflate stream
 * (no zlib or gzip header), as zip entries hold. */
static inline int lockstep_inflate_init_raw(z_stream *stream) {
    return inflateInit2(stream, -MAX_WBITS);
}
#endif
