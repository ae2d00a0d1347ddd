/* signals.h - the daemons' stop signals: SIGTERM or SIGINT starts a
 * graceful stop once; a second one exits at once with status 1 (a stuck
 * drain can always be cut short). */
#ifndef THAW_SIGNALS_H
#define THAW_SIGNALS_H

#include <uv.h>

typedef struct {
  uv_signal_t term, intr;
  int stopping; /* a stop has begun (a signal, or the owner's own) */
  void (*stop)(void *data);
  void *data;
} thaw_signals_t;

/* Watches SIGTERM and SIGINT on loop: the first calls stop(data). */
void thaw_signals_start(thaw_signals_t *s, uv_loop_t *loop,
                        void (*stop)(void *data), void *data);
/* Closes both handles (run the loop afterwards). */
void thaw_signals_close(thaw_signals_t *s);

#endif
