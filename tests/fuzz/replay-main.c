/* tests/fuzz-replay: run files through the fuzzing harness's
 * LLVMFuzzerTestOneInput without libFuzzer, so that the seed corpus and
 * crash files can be replayed with any compiler.
 *
 *   tests/fuzz-replay FILE|DIRECTORY...
 *
 * A directory stands for the files in it, in name order.  Each input
 * gets 60 seconds (a stuck server is killed by SIGALRM).  Exits 0 once
 * every input ran; a bug aborts.
 */

#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern int LLVMFuzzerInitialize (int *argc, char ***argv);
extern int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static unsigned nr_files;

static int
replay_file (const char *path)
{
  FILE *fp = fopen (path, "rb");
  unsigned char *buf = NULL;
  size_t len = 0, cap = 0, n;

  if (!fp) {
    fprintf (stderr, "fuzz-replay: %s: %s\n", path, strerror (errno));
    return -1;
  }
  for (;;) {
    if (len == cap) {
      unsigned char *b = realloc (buf, cap = cap ? cap * 2 : 65536);

      if (!b) {
        fprintf (stderr, "fuzz-replay: %s: out of memory\n", path);
        exit (EXIT_FAILURE);
      }
      buf = b;
    }
    n = fread (buf + len, 1, cap - len, fp);
    if (n == 0)
      break;
    len += n;
  }
  if (ferror (fp)) {
    fprintf (stderr, "fuzz-replay: %s: read error\n", path);
    fclose (fp);
    free (buf);
    return -1;
  }
  fclose (fp);

  printf ("replaying %s (%zu bytes)\n", path, len);
  fflush (stdout);
  alarm (60);
  LLVMFuzzerTestOneInput (buf, len);
  alarm (0);
  free (buf);
  nr_files++;
  return 0;
}

static int
replay_path (const char *path)
{
  struct stat st;
  struct dirent **names;
  int n, i, r = 0;

  if (stat (path, &st) == -1) {
    fprintf (stderr, "fuzz-replay: %s: %s\n", path, strerror (errno));
    return -1;
  }
  if (!S_ISDIR (st.st_mode))
    return replay_file (path);

  n = scandir (path, &names, NULL, alphasort);
  if (n == -1) {
    fprintf (stderr, "fuzz-replay: %s: %s\n", path, strerror (errno));
    return -1;
  }
  for (i = 0; i < n; ++i) {
    if (names[i]->d_name[0] != '.') {
      char *p;

      if (asprintf (&p, "%s/%s", path, names[i]->d_name) == -1) {
        fprintf (stderr, "fuzz-replay: out of memory\n");
        exit (EXIT_FAILURE);
      }
      if (stat (p, &st) == 0 && S_ISREG (st.st_mode) && replay_file (p) == -1)
        r = -1;
      free (p);
    }
    free (names[i]);
  }
  free (names);
  return r;
}

int
main (int argc, char *argv[])
{
  int i, r = 0;

  if (argc < 2) {
    fprintf (stderr, "usage: %s FILE|DIRECTORY...\n", argv[0]);
    return EXIT_FAILURE;
  }
  LLVMFuzzerInitialize (&argc, &argv);
  for (i = 1; i < argc; ++i)
    if (replay_path (argv[i]) == -1)
      r = -1;
  printf ("fuzz-replay: %u inputs replayed%s\n", nr_files,
          r == -1 ? ", some could not be read" : "");
  return r == -1 ? EXIT_FAILURE : EXIT_SUCCESS;
}
