/* nbdkit floppy backend: reading the host directory into a tree.
 *
 * Owns struct tree: one node per regular file and directory under DIR
 * (recursively, in byte order of the names, so that every start of the
 * backend lays out the same disk), with sizes and times from lstat.
 * Symbolic links, devices, sockets and pipes are skipped, as nbdkit's
 * floppy plugin does.  Every file is opened once here so that an
 * unreadable one is reported at start-up, naming it, rather than as
 * an I/O error in the middle of a client's copy.  No file is read.
 */

#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "floppy.h"

static int
by_name (const struct dirent **a, const struct dirent **b)
{
  return strcmp ((*a)->d_name, (*b)->d_name);
}

/* Append a node; returns its index or -1 (out of memory). */
static ssize_t
add_node (struct tree *tree, const char *path, const char *name,
          const struct stat *st)
{
  struct node *nodes, *n;

  nodes = realloc (tree->nodes, (tree->nr_nodes + 1) * sizeof *nodes);
  if (!nodes)
    return -1;
  tree->nodes = nodes;
  n = &nodes[tree->nr_nodes];
  memset (n, 0, sizeof *n);
  n->path = strdup (path);
  n->name = strdup (name);
  if (!n->path || !n->name) {
    free (n->path);
    free (n->name);
    return -1;
  }
  n->is_dir = S_ISDIR (st->st_mode);
  n->size = n->is_dir ? 0 : (uint64_t) st->st_size;
  n->mtime = st->st_mtim;
  n->atime = st->st_atim;
  return (ssize_t) tree->nr_nodes++;
}

/* Check that a regular file can be served: small enough for FAT32 and
 * readable by this process.
 */
static int
check_file (const char *path, const struct stat *st)
{
  int fd;

  if ((uint64_t) st->st_size > FAT_MAX_FILE_SIZE) {
    nbdkit_error ("%s: %" PRIu64 " bytes is too large for FAT32 (a file "
                  "can have at most 4 GiB - 1 = 4294967295 bytes); move it "
                  "out of the directory",
                  path, (uint64_t) st->st_size);
    return -1;
  }
  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd == -1) {
    nbdkit_error ("%s: cannot be read: %m", path);
    return -1;
  }
  close (fd);
  return 0;
}

/* Read the directory of node dir (already in the tree) recursively. */
static int
scan_dir (struct tree *tree, size_t dir)
{
  struct dirent **names = NULL;
  size_t *children = NULL;
  size_t nr_children = 0;
  char *dirpath = tree->nodes[dir].path;
  int n, i, r = -1;

  n = scandir (dirpath, &names, NULL, by_name);
  if (n == -1) {
    nbdkit_error ("%s: cannot read the directory: %m", dirpath);
    return -1;
  }
  children = calloc (n ? (size_t) n : 1, sizeof *children);
  if (!children) {
    nbdkit_error ("out of memory");
    goto out;
  }

  for (i = 0; i < n; ++i) {
    const char *name = names[i]->d_name;
    char *path;
    struct stat st;
    ssize_t idx;

    if (strcmp (name, ".") == 0 || strcmp (name, "..") == 0)
      continue;
    if (asprintf (&path, "%s/%s", dirpath, name) == -1) {
      nbdkit_error ("out of memory");
      goto out;
    }
    if (lstat (path, &st) == -1) {
      nbdkit_error ("%s: %m", path);
      free (path);
      goto out;
    }
    if (!S_ISREG (st.st_mode) && !S_ISDIR (st.st_mode)) {
      nbdkit_debug ("%s: not a regular file or a directory: skipped", path);
      free (path);
      continue;
    }
    if (S_ISREG (st.st_mode) && check_file (path, &st) == -1) {
      free (path);
      goto out;
    }
    idx = add_node (tree, path, name, &st);
    free (path);
    if (idx == -1) {
      nbdkit_error ("out of memory");
      goto out;
    }
    /* add_node may move the array: refresh pointers into it. */
    dirpath = tree->nodes[dir].path;
    tree->nodes[idx].parent = dir;
    if (utf8_to_lfn (tree->nodes[idx].path, name,
                     &tree->nodes[idx].lfn, &tree->nodes[idx].lfn_len) == -1)
      goto out;
    children[nr_children++] = (size_t) idx;
    if (tree->nodes[idx].is_dir) {
      if (scan_dir (tree, (size_t) idx) == -1)
        goto out;
      dirpath = tree->nodes[dir].path;
    }
    else
      tree->nr_files++;
  }

  tree->nodes[dir].children = children;
  tree->nodes[dir].nr_children = nr_children;
  children = NULL;
  r = assign_short_names (tree, dir);

 out:
  free (children);
  for (i = 0; i < n; ++i)
    free (names[i]);
  free (names);
  return r;
}

int
scan_tree (const char *dir, struct tree *tree)
{
  struct stat st;

  memset (tree, 0, sizeof *tree);
  if (stat (dir, &st) == -1) {
    nbdkit_error ("dir=%s: %m", dir);
    return -1;
  }
  if (add_node (tree, dir, "", &st) == -1) {
    nbdkit_error ("out of memory");
    return -1;
  }
  tree->nodes[0].parent = 0;
  if (scan_dir (tree, 0) == -1) {
    free_tree (tree);
    return -1;
  }
  return 0;
}

void
free_tree (struct tree *tree)
{
  size_t i;

  for (i = 0; i < tree->nr_nodes; ++i) {
    free (tree->nodes[i].path);
    free (tree->nodes[i].name);
    free (tree->nodes[i].lfn);
    free (tree->nodes[i].children);
    free (tree->nodes[i].dir_data);
  }
  free (tree->nodes);
  memset (tree, 0, sizeof *tree);
}
