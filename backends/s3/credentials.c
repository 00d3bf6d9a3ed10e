/* backends/s3/credentials.c: where the s3 backend's credentials come
 * from when access-key= and secret-key= are not given: the standard
 * AWS environment variables, else a profile of the AWS credentials file
 * (~/.aws/credentials, $AWS_SHARED_CREDENTIALS_FILE; profile=,
 * $AWS_PROFILE).  It fills access_key, secret_key and session_token,
 * and refuses contradictory combinations with a message saying which.
 */

#include <config.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbdkit-backend.h"
#include "s3defs.h"

static char *
trim (char *s)
{
  char *e;

  while (isspace ((unsigned char) *s))
    s++;
  e = s + strlen (s);
  while (e > s && isspace ((unsigned char) e[-1]))
    *--e = '\0';
  return s;
}

/* The profile's keys of an AWS credentials file (INI). */
static int
read_credentials_file (const char *file, const char *prof)
{
  FILE *fp = fopen (file, "r");
  char line[4096];
  bool in = false, found = false;

  if (fp == NULL) {
    nbdkit_error ("no AWS credentials: none given with access-key= and "
                  "secret-key=, none in AWS_ACCESS_KEY_ID and "
                  "AWS_SECRET_ACCESS_KEY, and %s: %m", file);
    return -1;
  }
  while (fgets (line, sizeof line, fp)) {
    char *l = trim (line), *eq;
    if (*l == '#' || *l == ';' || *l == '\0')
      continue;
    if (*l == '[') {
      char *e = strchr (l, ']');
      if (e) *e = '\0';
      in = strcmp (trim (l + 1), prof) == 0;
      found |= in;
      continue;
    }
    if (!in || (eq = strchr (l, '=')) == NULL)
      continue;
    *eq = '\0';
    l = trim (l);
    eq = trim (eq + 1);
    if (strcmp (l, "aws_access_key_id") == 0 && !access_key)
      access_key = strdup (eq);
    else if (strcmp (l, "aws_secret_access_key") == 0 && !secret_key)
      secret_key = strdup (eq);
    else if (strcmp (l, "aws_session_token") == 0 && !session_token)
      session_token = strdup (eq);
  }
  fclose (fp);
  if (!found) {
    nbdkit_error ("profile [%s] is not in the AWS credentials file %s%s",
                  prof, file, profile ? " (see profile=)" : "");
    return -1;
  }
  if (!access_key || !secret_key) {
    nbdkit_error ("profile [%s] of %s lacks %s", prof, file,
                  !access_key ? "aws_access_key_id" : "aws_secret_access_key");
    return -1;
  }
  nbdkit_debug ("credentials from profile [%s] of %s", prof, file);
  return 0;
}

int
find_credentials (void)
{
  const char *e_id, *e_secret, *e_token, *file, *prof;
  char *path = NULL;
  int r;

  if (access_key || secret_key) {
    if (!access_key || !secret_key) {
      nbdkit_error ("%s= is given without %s=: give both, or neither (to "
                    "take the credentials from the environment or "
                    "~/.aws/credentials)",
                    access_key ? "access-key" : "secret-key",
                    access_key ? "secret-key" : "access-key");
      return -1;
    }
    if (profile) {
      nbdkit_error ("profile=%s and access-key= do not go together: the "
                    "keys are either given or taken from the profile",
                    profile);
      return -1;
    }
    return 0;
  }
  if (session_token) {
    nbdkit_error ("session-token= needs access-key= and secret-key=");
    return -1;
  }
  e_id = getenv ("AWS_ACCESS_KEY_ID");
  e_secret = getenv ("AWS_SECRET_ACCESS_KEY");
  e_token = getenv ("AWS_SESSION_TOKEN");
  if (!profile && (e_id && *e_id) != (e_secret && *e_secret)) {
    nbdkit_error ("%s is set in the environment without %s",
                  e_id && *e_id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                  e_id && *e_id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
    return -1;
  }
  if (!profile && e_id && *e_id) {
    access_key = strdup (e_id);
    secret_key = strdup (e_secret);
    if (e_token && *e_token)
      session_token = strdup (e_token);
    if (!access_key || !secret_key) {
      nbdkit_error ("strdup: %m");
      return -1;
    }
    nbdkit_debug ("credentials from the environment");
    return 0;
  }
  file = getenv ("AWS_SHARED_CREDENTIALS_FILE");
  if (file == NULL || *file == '\0') {
    const char *home = getenv ("HOME");
    if (home == NULL || *home == '\0') {
      nbdkit_error ("no AWS credentials: none given with access-key= and "
                    "secret-key=, none in the environment, and no $HOME "
                    "for ~/.aws/credentials");
      return -1;
    }
    if (asprintf (&path, "%s/.aws/credentials", home) == -1) {
      nbdkit_error ("asprintf: %m");
      return -1;
    }
    file = path;
  }
  prof = profile;
  if (prof == NULL)
    prof = getenv ("AWS_PROFILE");
  if (prof == NULL || *prof == '\0')
    prof = "default";
  r = read_credentials_file (file, prof);
  free (path);
  return r;
}
