/* The floor for running a Nagios plugin: posix_spawn it from a loop, read its
 * output through a pipe (as wachtd does), wait for it; print the CPU of this
 * process and of the reaped children per run. Built and run by
 * bench/compare.py:
 *
 *   cc -O2 -o spawn_loop bench/spawn_loop.c
 *   ./spawn_loop RUNS /usr/lib/nagios/plugins/check_dummy 0 ok
 *
 * Output, one line: "runs=N wall_ms=… parent_ms=… children_ms=…" (totals).
 * RUNS is capped at 100000; every wait is for a child of this process only.
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

static double ms(struct timeval tv) { return tv.tv_sec * 1e3 + tv.tv_usec / 1e3; }

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s RUNS PROGRAM [ARG...]\n", argv[0]);
    return 2;
  }
  long runs = strtol(argv[1], NULL, 10);
  if (runs < 1 || runs > 100000) {
    fprintf(stderr, "RUNS must be 1..100000\n");
    return 2;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  char buf[4096];
  for (long i = 0; i < runs; ++i) {
    int fds[2];
    if (pipe(fds) != 0) return perror("pipe"), 1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[2], &fa, NULL, argv + 2, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
      fprintf(stderr, "posix_spawn: error %d\n", rc);
      return 1;
    }
    while (read(fds[0], buf, sizeof buf) > 0) {
    }
    close(fds[0]);
    int status;
    if (waitpid(pid, &status, 0) != pid) return perror("waitpid"), 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  struct rusage self, children;
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &children);
  printf("runs=%ld wall_ms=%.1f parent_ms=%.1f children_ms=%.1f\n", runs,
         (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6,
         ms(self.ru_utime) + ms(self.ru_stime), ms(children.ru_utime) + ms(children.ru_stime));
  return 0;
}
