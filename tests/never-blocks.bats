# The event loop never blocks (../shared/DESIGN.md, first principle),
# checked two ways.  Here, in the source: no file of the front end or of
# the filters calls a blocking primitive -- sleeping, synchronous file
# I/O, waiting for a process or a thread, name look-ups, system or
# popen -- unless the line (or the one above it) says why that call is
# not on the loop with a comment "never-blocks: REASON" (before the loop
# runs, in a worker thread, in the parent that never runs it).  At run
# time, the loop watchdog of every server the suite starts
# (tests/loop-watchdog.bats, tests/run-tests).

load helpers

blocking='(^|[^A-Za-z0-9_.>])(sleep|usleep|nanosleep|clock_nanosleep|pread|pwrite|preadv|pwritev|fsync|fdatasync|sync_file_range|syncfs|fallocate|sendfile|splice|waitpid|wait|wait3|wait4|waitid|system|popen|pclose|fgets|getline|fread|fwrite|fopen|fflush|getaddrinfo|getnameinfo|gethostbyname|flock|lockf|sem_wait|pthread_join|pthread_cond_wait|pthread_cond_timedwait|select|pselect|poll|ppoll|epoll_wait)[[:space:]]*\('

# Lines that call a blocking primitive without saying why it is safe.
unexplained() {
    local f
    shopt -s nullglob
    for f in "$top_srcdir"/nbdkit/*.c "$top_srcdir"/filters/*.c "$top_srcdir"/filters/*/*.c; do
        awk -v file="${f#"$top_srcdir"/}" -v re="$blocking" '
            { code = $0; sub(/\/\*.*$/, "", code); sub(/^[[:space:]]*\*.*$/, "", code) }
            code ~ re && $0 !~ /never-blocks:/ && prev !~ /never-blocks:/ &&
              !(code ~ /waitpid/ && code ~ /WNOHANG/) {
                printf "%s:%d: %s\n", file, NR, $0
            }
            { prev = $0 }' "$f"
    done
}

@test "no blocking call in the front end or the filters goes unexplained" {
    run unexplained
    echo "$output"
    [ "$status" -eq 0 ]
    [ -z "$output" ]
}

@test "the check finds a blocking call that is not explained" {
    local d=$BATS_TEST_TMPDIR/tree
    mkdir -p "$d/nbdkit" "$d/filters"
    printf 'static void f (int fd) {\n  char b[1];\n  pread (fd, b, 1, 0);\n  waitpid (-1, NULL, WNOHANG);\n  usleep (1);  /* never-blocks: a test */\n}\n' \
        > "$d/filters/bad.c"
    top_srcdir=$d run unexplained
    echo "$output"
    [ "$output" = "filters/bad.c:3:   pread (fd, b, 1, 0);" ]
}
