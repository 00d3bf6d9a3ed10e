# Installing: make install into a private root puts every file where
# debian/*.install expects it, the systemd units it installs verify and
# are hardened, and the shared backend library exports only its API.
# (The .debs themselves are built with dpkg-buildpackage: README.)

load helpers

# The build's directories, as make knows them: make_var NAME.
make_var() {
    printf 'show:\n\t@echo $(%s)\n' "$1" |
        make -s --no-print-directory -C "$top_builddir" -f Makefile -f - show
}

# Install once per file, into $root (the directories of the build).
setup_file() {
    root=$BATS_FILE_TMPDIR/root
    export root
    make -s -C "$top_builddir" install DESTDIR="$root" >"$BATS_FILE_TMPDIR/install.log" 2>&1 ||
        { cat "$BATS_FILE_TMPDIR/install.log"; return 1; }
}

@test "make install puts each file where debian/*.install expects it" {
    # debian/ names the Debian paths; map them to this build's.
    local bindir libexecdir libdir includedir mandir unitdir compdir
    bindir=$(make_var bindir); libexecdir=$(make_var libexecdir)
    libdir=$(make_var libdir); includedir=$(make_var includedir)
    mandir=$(make_var mandir); unitdir=$(make_var systemdsystemunitdir)
    compdir=$(make_var bashcompletiondir)
    [ "$unitdir" != no ] || skip "configured --with-systemdsystemunitdir=no"
    [ "$compdir" != no ] || skip "configured --with-bashcompletiondir=no"
    missing=0
    for f in "$top_srcdir"/debian/*.install "$top_srcdir"/debian/not-installed; do
        while read -r path; do
            case $path in ''|'#'*) continue ;; esac
            # A backend the build left out (no libcurl, libnbd, libssh).
            case $path in
                */nbdkit-curl-backend*|*/nbdkit-nbd-backend*|*/nbdkit-ssh-backend*)
                    b=${path##*/nbdkit-}; b=${b%%-backend*}
                    [ -x "$top_builddir/backends/$b/nbdkit-$b-backend" ] || continue ;;
            esac
            p=$(echo "$path" | sed -e "s|^usr/bin|$bindir|" \
                -e "s|^usr/libexec|$libexecdir|" -e "s|^usr/lib/\*|$libdir|" \
                -e "s|^usr/include|$includedir|" -e "s|^usr/share/man|$mandir|" \
                -e "s|^lib/systemd/system|$unitdir|" \
                -e "s|^usr/share/bash-completion/completions|$compdir|")
            # shellcheck disable=SC2086
            if ! ls -d "$root"$p >/dev/null 2>&1; then
                echo "${f##*/}: $path: not installed (looked for $root$p)"
                missing=1
            fi
            # shellcheck disable=SC2086
            ls -d "$root"$p 2>/dev/null >> "$BATS_TEST_TMPDIR/covered"
        done < "$f"
    done
    [ "$missing" -eq 0 ]
    # And the other way, as dh_missing checks: every file make install
    # puts is shipped by a package or listed in debian/not-installed
    # (libtool's .la, which debian/rules deletes, apart).
    while read -r file; do
        case $file in *.la) continue ;; esac
        covered=0
        while read -r c; do
            case $file in "$c"|"$c"/*) covered=1; break ;; esac
        done < "$BATS_TEST_TMPDIR/covered"
        if [ "$covered" -eq 0 ]; then
            echo "${file#"$root"}: installed, but in no debian/*.install nor debian/not-installed"
            missing=1
        fi
    done < <(find "$root" -type f -o -type l)
    [ "$missing" -eq 0 ]
    # Completion from the source tree, as dh_bash-completion installs it.
    cmp "$root$compdir/nbdkit" "$top_srcdir/contrib/bash-completion/nbdkit"
    grep -qx 'Libs.private: -ljansson -pthread' "$root$libdir/pkgconfig/nbdkit-backend.pc"
}

@test "the installed units start the installed nbdkit and verify" {
    requires systemd-analyze
    unitdir=$(make_var systemdsystemunitdir)
    [ "$unitdir" != no ] || skip "configured --with-systemdsystemunitdir=no"
    for u in nbdkit.service nbdkit@.service; do
        grep -qx "ExecStart=$(make_var bindir)/nbdkit .*" "$root$unitdir/$u"
    done
    grep -qx 'ExecStartPre=-/bin/rm -f /run/nbdkit/%i.sock' "$root$unitdir/nbdkit@.service"
    # verify resolves ExecStart= and the units' dependencies inside
    # --root: give it the host's rm, targets and slices.
    mkdir -p "$root/bin"
    cp /bin/rm "$root/bin/rm"
    cp -n /lib/systemd/system/*.target /lib/systemd/system/*.slice "$root$unitdir/"
    cd "$root$unitdir"
    run systemd-analyze verify --root="$root" \
        nbdkit.socket nbdkit.service nbdkit@disk1.service
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "systemd-analyze security rates both units 3 or less" {
    requires systemd-analyze
    unitdir=$(make_var systemdsystemunitdir)
    [ "$unitdir" != no ] || skip "configured --with-systemdsystemunitdir=no"
    for u in nbdkit.service nbdkit@.service; do
        run systemd-analyze security --offline=yes --threshold=30 \
            "$root$unitdir/$u"
        echo "$output" | tail -1
        [ "$status" -eq 0 ]
    done
}

@test "the units' hardening lets memory, file and eval serve under systemd" {
    requires systemd-run nbdinfo
    [ -d /run/systemd/system ] ||
        skip "systemd is not the init system here (no /run/systemd/system)"
    [ "$(id -u)" -eq 0 ] || skip "needs root to start a system unit"
    # The units' hardening on transient services of the build's server,
    # its socket in a runtime directory as nbdkit@.service has it.
    props=()
    while read -r line; do
        case $line in ''|'#'*) continue ;; esac
        props+=(-p "$line")
    done < "$top_srcdir/contrib/systemd/hardening"
    i=0
    for backend in "memory 1M" "-r file /etc/os-release" \
                   "eval get_size='echo 512' pread='head -c \$3 /dev/zero'"; do
        unit=nbdkit-test-$$-$i; i=$((i + 1))
        eval "set -- $backend"
        systemd-run --quiet --unit="$unit" -p Type=notify -p DynamicUser=yes \
            -p RuntimeDirectory="$unit" "${props[@]}" \
            "$NBDKIT" -f -U "/run/$unit/sock" "$@"
        run nbdinfo --size "nbd+unix:///?socket=/run/$unit/sock"
        systemctl stop "$unit"
        echo "$backend: $output"
        [ "$status" -eq 0 ]
    done
}

@test "libnbdkit-backend.so exports only the nbdkit_ and hp_ API" {
    requires nm
    so=$top_builddir/.libs/libnbdkit-backend.so
    [ -e "$so" ] || skip "$so is not built (configured --disable-shared)"
    nm -D --defined-only "$so" | awk 'NF == 3 { sub(/@.*/, "", $3); print $3 }' \
        > "$BATS_TEST_TMPDIR/syms"
    grep -qx nbdkit_backend_main "$BATS_TEST_TMPDIR/syms"
    not grep -Ev '^(nbdkit_[a-z]|hp_|NBDKIT_BACKEND_0$)' "$BATS_TEST_TMPDIR/syms"
    # debian/libnbdkit-backend0.symbols lists the same names.
    diff <(sort "$BATS_TEST_TMPDIR/syms") \
         <(awk '/^ / { sub(/@.*/, "", $1); print $1 }' \
               "$top_srcdir/debian/libnbdkit-backend0.symbols" | sort)
}

# complete WORD...: what the completion offers for the last word, one a
# line, in a bash without bash-completion, with the build's nbdkit first
# in $PATH.
complete_nbdkit() {
    mkdir -p "$BATS_TEST_TMPDIR/bin"
    ln -sf "$NBDKIT" "$BATS_TEST_TMPDIR/bin/nbdkit"
    PATH=$BATS_TEST_TMPDIR/bin:$PATH bash --norc --noprofile -c '
        source "$1"; shift
        COMP_WORDS=(nbdkit "$@"); COMP_CWORD=$#
        _nbdkit
        printf "%s\n" "${COMPREPLY[@]}"' \
        _ "$top_srcdir/contrib/bash-completion/nbdkit" "$@"
}

@test "completion works in the build tree without bash-completion" {
    run complete_nbdkit me
    [ "$output" = memory ]
    run complete_nbdkit --filter=log --filter mu
    [ "$output" = multi-conn ]
    run complete_nbdkit --read-on
    [ "$output" = --read-only ]
    # Every filter with a man page is offered.
    n=0
    for f in "$top_srcdir"/docs/nbdkit-*-filter.pod; do
        f=${f##*/nbdkit-}; f=${f%-filter.pod}
        run complete_nbdkit --filter "$f"
        echo "$output" | grep -qx -- "$f" || { echo "--filter $f is not completed"; return 1; }
        n=$((n + 1))
    done
    [ "$n" -gt 20 ]
}
