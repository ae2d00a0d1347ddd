/* signals.c - stop signals (signals.h). */
#include "signals.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static void on_signal(uv_signal_t *h, int signum) {
  thaw_signals_t *s = h->data;
  if (s->stopping) {
    thaw_warn("second signal: exiting now", "signal", strsignal(signum));
    exit(1);
  }
  s->stopping = 1;
  thaw_info("signal: stopping", "signal", strsignal(signum));
  s->stop(s->data);
}

void thaw_signals_start(thaw_signals_t *s, uv_loop_t *loop,
                        void (*stop)(void *data), void *data) {
  s->stop = stop;
  s->data = data;
  uv_signal_init(loop, &s->term);
  uv_signal_init(loop, &s->intr);
  s->term.data = s->intr.data = s;
  uv_signal_start(&s->term, on_signal, SIGTERM);
  uv_signal_start(&s->intr, on_signal, SIGINT);
}

void thaw_signals_close(thaw_signals_t *s) {
  uv_close((uv_handle_t *)&s->term, NULL);
  uv_close((uv_handle_t *)&s->intr, NULL);
}
