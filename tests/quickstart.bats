# contrib/quickstart's own arguments, checked before it sets anything
# up (the suite never runs its set-up: that would reconfigure and
# rebuild the tree under the other tests).

load helpers

QUICKSTART=$top_srcdir/contrib/quickstart

@test "quickstart serve --port refuses what is not a port, naming it" {
    for bad in abc 0 70000 -1 1.5 ''; do
        run "$QUICKSTART" serve --port "$bad"
        [ "$status" -eq 1 ]
        [[ "$output" == *"--port: '$bad' is not a port number (1-65535)"* ]]
    done
    run "$QUICKSTART" serve --port=99999
    [ "$status" -eq 1 ]
    [[ "$output" == *"'99999' is not a port number"* ]]
    run "$QUICKSTART" serve --port
    [ "$status" -eq 1 ]
    [[ "$output" == *"--port needs a port number"* ]]
}

@test "quickstart: --port belongs to serve, and serve refuses other arguments" {
    run "$QUICKSTART" test --port 10810
    [ "$status" -eq 1 ]
    [[ "$output" == *"--port is an option of 'serve' only"* ]]
    run "$QUICKSTART" serve --colour
    [ "$status" -eq 1 ]
    [[ "$output" == *"unknown argument '--colour'"* ]]
    run "$QUICKSTART" launch
    [ "$status" -eq 1 ]
    [[ "$output" == *"usage: contrib/quickstart serve [--port N]"* ]]
}
