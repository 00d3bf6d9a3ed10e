# The man pages point only at pages that exist: every L<page(N)> of
# docs/*.pod is a page built here or a page of another Debian package
# (tests/system-man-pages), and nbdkit(1)'s SEE ALSO lists every backend
# and filter page built.

load helpers

# The man pages this build makes, as page(N), one a line.
built_pages() {
    printf 'show:\n\t@echo $(man_MANS)\n' |
        make -s --no-print-directory -C "$top_builddir" -f Makefile -f - show |
        tr ' ' '\n' | sed -n 's|^.*/\(.*\)\.\([1-8]\)$|\1(\2)|p'
}

@test "every page a man page links to is built here or a listed system page" {
    built_pages > "$BATS_TEST_TMPDIR/built"
    grep -q '^nbdkit(1)$' "$BATS_TEST_TMPDIR/built"
    awk '!/^#/ && NF { print $1 }' "$top_srcdir/tests/system-man-pages" \
        > "$BATS_TEST_TMPDIR/system"
    bad=0
    for pod in "$top_srcdir"/docs/*.pod; do
        # L<name(N)>, not L<text|URL>.
        for page in $(grep -oE 'L<[^>|/]*\([1-8]\)>' "$pod" |
                      sed 's/^L<//; s/>$//' | sort -u); do
            grep -qxF "$page" "$BATS_TEST_TMPDIR/built" && continue
            # A page of nbdkit's own must be one of this build: Debian's
            # nbdkit, whose pages these would be, cannot be installed
            # beside this one (README, "Debian packages").
            case $page in
                nbdkit*) ;;
                *) grep -qxF "$page" "$BATS_TEST_TMPDIR/system" && continue ;;
            esac
            echo "${pod##*/}: L<$page>: neither built here nor in tests/system-man-pages"
            bad=1
        done
    done
    [ "$bad" -eq 0 ]
}

@test "the listed system pages exist where their package is installed" {
    requires man dpkg-query
    man -w 1 ls >/dev/null 2>&1 || skip "man finds no page at all here (man pages excluded from this system?)"
    bad=0 checked=0
    while read -r page pkg; do
        case $page in ''|'#'*) continue ;; esac
        [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] ||
            continue
        name=${page%(*} sect=${page#*(}
        sect=${sect%)}
        checked=$((checked + 1))
        if ! man -w "$sect" "$name" >/dev/null 2>&1; then
            echo "tests/system-man-pages: $page: $pkg is installed but has no such page"
            bad=1
        fi
    done < "$top_srcdir/tests/system-man-pages"
    echo "checked $checked pages"
    [ "$checked" -gt 0 ] || skip "none of the packages listed is installed"
    [ "$bad" -eq 0 ]
}

@test "nbdkit(1)'s SEE ALSO lists every backend and filter page built" {
    requires man
    page=$top_builddir/docs/nbdkit.1
    [ -f "$page" ] || skip "$page is not built (run make)"
    see=$(MANWIDTH=1000 man -l "$page" 2>/dev/null |
          sed -n '/^SEE ALSO/,/^[A-Z]/p')
    n=0
    for p in $(built_pages | grep -E -- '-(backend|filter)\(1\)$'); do
        echo "$see" | grep -qF "$p" || { echo "SEE ALSO lacks $p"; return 1; }
        n=$((n + 1))
    done
    [ "$n" -gt 20 ]
    # And the POD keeps the line make replaces.
    grep -qx '=for nbdkit-generated backend-and-filter-pages' "$top_srcdir/docs/nbdkit.pod"
}
