# -v traces every call at every layer in nbdkit's form, and
# -D nbdkit.backend.controlpath=0 / datapath=0 silence the two classes.

load helpers

run_traced() {
    "$NBDKIT" -v -U - --filter=offset "$@" memory 1M offset=512 \
        --run 'nbdsh -u "$uri" -c "h.pwrite(b\"x\" * 512, 0); h.pread(512, 0); h.zero(512, 0, nbd.CMD_FLAG_FUA)"' \
        2> "$BATS_TEST_TMPDIR/trace"
}

@test "-v traces the calls at each layer as nbdkit does" {
    requires nbdsh
    run_traced
    t=$BATS_TEST_TMPDIR/trace
    grep -q '^nbdkit: memory\[1\]: debug: offset: open readonly=0 exportname="" tls=0$' "$t"
    grep -q '^nbdkit: memory\[1\]: debug: memory: open readonly=0 exportname="" tls=0$' "$t"
    grep -q '^nbdkit: memory\[1\]: debug: offset: pwrite count=512 offset=0 fua=0$' "$t"
    grep -q '^nbdkit: memory\[1\]: debug: memory: pwrite count=512 offset=512 fua=0$' "$t"
    grep -q '^nbdkit: memory\[1\]: debug: offset: pread count=512 offset=0$' "$t"
    grep -q '^nbdkit: memory\[1\]: debug: memory: pread count=512 offset=512$' "$t"
    grep -q '^nbdkit: memory\[1\]: debug: memory: zero count=512 offset=512 may_trim=1 fua=1 fast=0$' "$t"
    grep -q '^nbdkit: memory\[1\]: debug: memory: close$' "$t"
    # The filter's line comes before the backend's.
    [ "$(grep -n 'offset: pread' "$t" | cut -d: -f1)" -lt \
      "$(grep -n 'memory: pread' "$t" | cut -d: -f1)" ]
}

@test "-D nbdkit.backend.datapath=0 silences the data path only" {
    requires nbdsh
    run_traced -D nbdkit.backend.datapath=0
    t=$BATS_TEST_TMPDIR/trace
    grep -q 'debug: memory: open readonly=0' "$t"
    not grep -q 'debug: memory: pread' "$t"
    not grep -q 'debug: offset: pwrite' "$t"
}

@test "-D nbdkit.backend.controlpath=0 silences the control path only" {
    requires nbdsh
    run_traced -D nbdkit.backend.controlpath=0
    t=$BATS_TEST_TMPDIR/trace
    not grep -q 'debug: memory: open' "$t"
    not grep -q 'debug: offset: close' "$t"
    grep -q 'debug: memory: pread count=512 offset=512' "$t"
}

@test "-D FILTER.FLAG is a filter's flag, not an unknown name" {
    run "$NBDKIT" -v -U - --filter=offset -D offset.anything=1 memory 1M \
        offset=0 --run true
    [ "$status" -eq 0 ]
    [[ "$output" != *"debug flag -D offset.anything was not used"* ]]
    # As nbdkit, with or without -v.
    run "$NBDKIT" -U - -D nosuch.flag=1 memory 1M --run true
    [ "$status" -eq 0 ]
    [ "$output" = "nbdkit: warning: debug flag -D nosuch.flag was not used" ]
}
