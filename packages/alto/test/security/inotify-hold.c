/*
 * inotify-hold N [hold]: creates up to N inotify instances, prints `held=<how many>`, and with
 * `hold` keeps them until killed. The sandbox isolation test runs it inside apps (a static
 * binary, since its busybox has no inotify applet) to use up one tenant's instances.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int wanted = argc > 1 ? atoi(argv[1]) : 1, held = 0;
  while (held < wanted && inotify_init1(0) >= 0) held++;
  printf("held=%d\n", held);
  fflush(stdout);
  if (argc > 2) for (;;) pause();
  return 0;
}
