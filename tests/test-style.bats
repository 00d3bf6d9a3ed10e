#!/usr/bin/env bats
# The tests' own rules, checked on their source.

load helpers

# bash's errexit ignores a "! CMD" statement, so bats fails a test on
# one only when it is the test's last command: a negative check in the
# middle of a test written so checked nothing.  They are written
# "not CMD" (helpers.bash).  Conditions (if, while, && and ||) keep
# their "!", and so do scripts the tests write for another shell (they
# start at the first column).
@test "negative checks are written 'not CMD', which bats does not ignore" {
    run grep -nE '^[[:space:]]+! ' "$top_srcdir"/tests/*.bats \
        "$top_srcdir"/tests/*.bash
    echo "$output" | grep -Ev '(\|\||then|do)[[:space:]]*$' | not grep .
    run not true
    [ "$status" -ne 0 ]
    [[ "$output" == *"expected to fail, but succeeded: true"* ]]
    run not false
    [ "$status" -eq 0 ]
}
