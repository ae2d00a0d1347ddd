/* main.c - thaw-controller: flags (config.c), signals and the loop;
 * controller.c wires the parts. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "controller.h"
#include "error.h"
#include "log.h"
#include "signals.h"

typedef struct {
  uv_loop_t *loop;
  thaw_controller_t *ctl;
  thaw_signals_t sig;
} app_t;

static void on_stopped(void *data) {
  app_t *a = data;
  thaw_signals_close(&a->sig);
  uv_stop(a->loop);
}

static void on_stop_signal(void *data) {
  app_t *a = data;
  thaw_controller_stop(a->ctl, on_stopped, a);
}

int main(int argc, char **argv) {
  thaw_config_t cfg;
  int rc = thaw_config_parse(&cfg, argc, argv);
  if (rc != 0) {
    thaw_config_free(&cfg);
    return rc == 1 ? 0 : rc;
  }
  enum thaw_log_level lv;
  if (thaw_log_level_parse(cfg.log_level, &lv) == 0) /* checked by config */
    thaw_log_set_level(lv);
  signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error code */
  uv_loop_t loop;
  uv_loop_init(&loop);
  app_t a = {.loop = &loop};
  char err[600];
  rc = thaw_controller_new(&loop, &cfg, &a.ctl, err, sizeof err);
  if (rc != 0) {
    uv_run(&loop, UV_RUN_DEFAULT); /* let half-made parts close */
    uv_loop_close(&loop);
    fprintf(stderr, "thaw-controller: %s\n", err);
    thaw_config_free(&cfg);
    return rc == THAW_ENOMEM ? 1 : 2;
  }
  thaw_signals_start(&a.sig, &loop, on_stop_signal, &a);

  int status = 0;
  if (thaw_controller_start(a.ctl, err, sizeof err) != 0) {
    thaw_error("cannot start", "error", err);
    status = 1;
    a.sig.stopping = 1;
    thaw_controller_stop(a.ctl, on_stopped, &a);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  thaw_controller_free(a.ctl);
  uv_run(&loop, UV_RUN_DEFAULT); /* close what is left */
  if (uv_loop_close(&loop) != 0)
    thaw_warn("loop closed with handles open");
  thaw_config_free(&cfg);
  return status;
}
