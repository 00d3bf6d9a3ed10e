# Nbdkit: the helper protocol in pure Perl, for nbdkit-perl-backend.
#
# This module owns two things:
#
#  * the backend side of the helper protocol (docs/nbdkit-helper-protocol.pod):
#    the frame codec, one dispatch on the message type, and the replies;
#  * the Nbdkit package that plugin scripts written for nbdkit's perl
#    plugin call (Nbdkit::set_error, Nbdkit::debug, $Nbdkit::FLAG_FUA ...),
#    so that those scripts run unchanged.  Their callbacks are subs of
#    package main (sub open, sub get_size, sub pread ...).
#
# Core modules only.  Requests are served one at a time, in the order
# they arrive (thread model serialize_all_requests).  Nothing here writes
# to standard output, which is /dev/null; diagnostics go to standard
# error, which the server logs.

package Nbdkit;

use strict;
use warnings;

use Errno ();
use File::Spec ();
use JSON::PP ();

our $VERSION = '1.0';

# ---- the API of nbdkit's perl plugin (what scripts use) ----

our $THREAD_MODEL_SERIALIZE_CONNECTIONS = 0;
our $THREAD_MODEL_SERIALIZE_ALL_REQUESTS = 1;
our $THREAD_MODEL_SERIALIZE_REQUESTS = 2;
our $THREAD_MODEL_PARALLEL = 3;

our $FLAG_MAY_TRIM = 1 << 0;
our $FLAG_FUA = 1 << 1;
our $FLAG_REQ_ONE = 1 << 2;
our $FLAG_FAST_ZERO = 1 << 3;

our $FUA_NONE = 0;
our $FUA_EMULATE = 1;
our $FUA_NATIVE = 2;
our $CACHE_NONE = 0;
our $CACHE_EMULATE = 1;
our $CACHE_NATIVE = 2;

our $EXTENT_HOLE = 1 << 0;
our $EXTENT_ZERO = 1 << 1;

# The same values as constant subs: Nbdkit::FLAG_FUA().
use constant {
    THREAD_MODEL_SERIALIZE_CONNECTIONS => 0,
    THREAD_MODEL_SERIALIZE_ALL_REQUESTS => 1,
    THREAD_MODEL_SERIALIZE_REQUESTS => 2,
    THREAD_MODEL_PARALLEL => 3,
    FLAG_MAY_TRIM => 1, FLAG_FUA => 2, FLAG_REQ_ONE => 4, FLAG_FAST_ZERO => 8,
    FUA_NONE => 0, FUA_EMULATE => 1, FUA_NATIVE => 2,
    CACHE_NONE => 0, CACHE_EMULATE => 1, CACHE_NATIVE => 2,
    EXTENT_HOLE => 1, EXTENT_ZERO => 2,
};

my $verbose = 0;
my $err = 0;                    # set by set_error during a callback
my $export_name = '';
my $tls = 0;

sub _log
{
    my $line = shift;
    $line =~ s/\n+\z//;
    print STDERR "$line\n";
}

# Print a debug message in the server log (only with nbdkit -v).
sub debug
{
    _log ("debug: " . join ('', @_)) if $verbose;
}

# Record the errno value of the error the callback is about to die with.
sub set_error
{
    $err = int (shift // 0);
}

sub export_name { $export_name }
sub is_tls { $tls ? 1 : 0 }

# Parse a size such as "1G" into bytes; dies with a message if invalid.
sub parse_size
{
    my $s = shift;
    my $str = defined $s ? $s : '';
    $str =~ /^\s*(\d+)([bkmgtpe]?)\s*$/i
        or die "'$str': not a size: use a number of bytes with an optional "
             . "suffix b, k, M, G, T, P or E (e.g. 1G)\n";
    my ($n, $suffix) = ($1, lc $2);
    my $shift = $suffix eq '' ? 0 : 10 * index ('bkmgtpe', $suffix);
    my $max = 9223372036854775807;
    die "'$str': too large (the largest size is 2^63-1 bytes, just "
        . "under 8E)\n"
        if length ($n) > 19 || $n > ($max >> $shift);
    return $n << $shift;
}

sub parse_bool
{
    my $v = lc (shift // '');
    $v =~ s/^\s+|\s+$//g;
    return 1 if $v =~ /^(1|true|t|yes|y|on)$/;
    return 0 if $v =~ /^(0|false|f|no|n|off)$/;
    die "'$v': not a boolean: use true/false, yes/no, on/off or 1/0\n";
}

sub shutdown
{
    _log ("shutdown requested by the script (the server keeps running; "
          . "stop it with SIGTERM)");
}

sub disconnect
{
    debug ("disconnect requested by the script: ignored");
}

# ---- the wire format ----

my $MAGIC = 0x4e424b48;
my $HEADER = 'N n n Q> N N Q> N N';
my $HEADER_SIZE = 40;
my $REPLY = 0x8000;
my $MAX_PAYLOAD = 64 * 1024 * 1024;
my $MAX_DATA = 32 * 1024 * 1024;
my $MAX_OFFSET = 9223372036854775807;

my ($HELLO, $CONFIG, $CONFIG_COMPLETE, $GET_READY, $DUMP, $LIST_EXPORTS,
    $DEFAULT_EXPORT, $OPEN, $CLOSE, $SHUTDOWN, $ATTACH_FD) = (1 .. 11);
my $PING = 12;
my ($PREAD, $PWRITE, $FLUSH, $TRIM, $ZERO, $CACHE, $EXTENTS) = (16 .. 22);

my ($HP_FUA, $HP_MAY_TRIM, $HP_FAST_ZERO, $HP_REQ_ONE, $HP_ZEROS) =
    (0x1, 0x2, 0x4, 0x8, 0x10);
my %ALLOWED_FLAGS = (
    $PWRITE => $HP_FUA, $TRIM => $HP_FUA,
    $ZERO => $HP_FUA | $HP_MAY_TRIM | $HP_FAST_ZERO,
    $EXTENTS => $HP_REQ_ONE, $PREAD => $HP_ZEROS,
);

my ($EPERM, $EIO, $ENOMEM, $EINVAL, $ENOSPC, $EOVERFLOW, $ENOTSUP,
    $ESHUTDOWN) = (1, 5, 12, 22, 28, 75, 95, 108);
my %WIRE_ERROR = (
    Errno::EPERM () => $EPERM, Errno::EROFS () => $EPERM,
    Errno::EIO () => $EIO, Errno::ENOMEM () => $ENOMEM,
    Errno::EINVAL () => $EINVAL, Errno::ENOSPC () => $ENOSPC,
    Errno::EDQUOT () => $ENOSPC, Errno::EFBIG () => $ENOSPC,
    Errno::EOVERFLOW () => $EOVERFLOW, Errno::ENOTSUP () => $ENOTSUP,
    Errno::EOPNOTSUPP () => $ENOTSUP, Errno::ESHUTDOWN () => $ESHUTDOWN,
);
my %LEVEL_NAME = (0 => 'none', 1 => 'emulate', 2 => 'native');

my $json = JSON::PP->new->utf8->canonical;

# A failure: dies with { code, msg, host } that the loop turns into an
# error reply.
sub _fail
{
    my ($code, $msg, $host) = @_;
    die { code => $code, msg => $msg, host => $host // 0 };
}

sub _violation
{
    die { violation => shift };
}

my $ch;                         # the channel

sub _read_exactly
{
    my $n = shift;
    my $buf = '';
    while (length ($buf) < $n) {
        my $r = sysread ($ch, $buf, $n - length ($buf), length ($buf));
        if (!defined $r) {
            next if $!{EINTR};
            _violation ("reading the channel: $!");
        }
        if ($r == 0) {
            return undef if length ($buf) == 0;
            _violation ("the channel ended in the middle of a frame");
        }
    }
    return $buf;
}

sub _write_all
{
    my $data = shift;
    my $off = 0;
    while ($off < length ($data)) {
        my $r = syswrite ($ch, $data, length ($data) - $off, $off);
        if (!defined $r) {
            next if $!{EINTR};
            die { epipe => "$!" };
        }
        $off += $r;
    }
}

# The next request as a hash, or undef at the end of the channel.
sub _read_frame
{
    my $raw = _read_exactly ($HEADER_SIZE);
    return undef unless defined $raw;
    my %h;
    @h{qw(magic type flags id handle status offset count plen)} =
        unpack ($HEADER, $raw);
    my $t = $h{type};
    _violation (sprintf "bad magic 0x%08x", $h{magic}) if $h{magic} != $MAGIC;
    _violation (sprintf "a reply (type 0x%04x) from the front end", $t)
        if $t & $REPLY;
    _violation ("unknown message type $t")
        unless ($t >= $HELLO && $t <= $ATTACH_FD) || $t == $PING ||
               ($t >= $PREAD && $t <= $EXTENTS);
    _violation ("PING with a payload, handle, offset or count")
        if $t == $PING && ($h{plen} || $h{handle} || $h{offset} || $h{count});
    _violation (sprintf "flags 0x%04x not allowed on type %d", $h{flags}, $t)
        if $h{flags} & ~($ALLOWED_FLAGS{$t} // 0);
    _violation ("a request with status $h{status}") if $h{status};
    _violation ("payload of $h{plen} bytes is over the limit")
        if $h{plen} > $MAX_PAYLOAD;
    _violation ("offset $h{offset} + count $h{count} is out of range")
        if $h{offset} > $MAX_OFFSET || $h{count} > $MAX_OFFSET - $h{offset};
    _violation ("count $h{count} is over 32 MiB")
        if ($t == $PREAD || $t == $PWRITE) && $h{count} > $MAX_DATA;
    _violation ("PWRITE payload of $h{plen} bytes for count $h{count}")
        if $t == $PWRITE && $h{plen} != $h{count};
    _violation ("a payload on data request type $t")
        if $t >= $PREAD && $t != $PWRITE && $h{plen};
    _violation ("FLUSH with a non-zero offset or count")
        if $t == $FLUSH && ($h{offset} || $h{count});
    if ($h{plen}) {
        my $p = _read_exactly ($h{plen});
        _violation ("the channel ended in the middle of a frame")
            unless defined $p;
        $h{payload} = $p;
    }
    else {
        $h{payload} = '';
    }
    return \%h;
}

sub _reply
{
    my ($req, $status, $payload, $handle) = @_;
    $payload //= '';
    _write_all (pack ($HEADER, $MAGIC, $req->{type} | $REPLY, 0, $req->{id},
                      $handle // 0, $status // 0, $req->{offset},
                      $req->{count}, length ($payload)) . $payload);
}

sub _reply_json
{
    my ($req, $obj, $handle) = @_;
    _reply ($req, 0, $json->encode ($obj), $handle);
}

# ---- the script and its callbacks ----

my $script;                     # its absolute path, once loaded

sub _fn
{
    my $name = shift;
    return undef unless defined $script;
    no strict 'refs';
    return defined &{"main::$name"} ? \&{"main::$name"} : undef;
}

sub _has { defined _fn (shift) }

sub _one_line
{
    my $m = shift;
    $m = "$m";
    $m =~ s/\s+\z//;
    $m =~ s/\n/ /g;
    return $m;
}

# Run a script callback; turn a die into a failure with the error code
# of set_error (else DEFAULT), logged.
sub _call
{
    my ($where, $default, $name, @args) = @_;
    my $f = _fn ($name);
    $err = 0;
    my @r;
    my $ok = eval { @r = $f->(@args); 1 };
    if (!$ok) {
        my $e = $@;
        die $e if ref $e eq 'HASH' && ($e->{code} || $e->{violation});
        my $host = $err;
        my $code = $host ? ($WIRE_ERROR{$host} // $EIO) : $default;
        my $msg = "$where: " . _one_line ($e);
        _log ("error: $msg");
        _fail ($code, $msg, $host);
    }
    return wantarray ? @r : $r[-1];
}

sub _load_script
{
    my $path = shift;
    _fail ($EINVAL, "script=: give the path of a Perl script")
        if $path eq '';
    $path = File::Spec->rel2abs ($path);
    _fail ($EINVAL, "script=$path: cannot read the script: $!")
        unless -f $path && -r _;
    $script = $path;
    my $ok = eval {
        package main;
        do $path;
        die $@ if $@;
        1;
    };
    if (!$ok) {
        my $msg = _one_line ($@);
        $script = undef;
        _log ("error: $path: $msg");
        _fail ($EINVAL, "script=$path: cannot load the script: $msg");
    }
    _call ('load', $EINVAL, 'load') if _has ('load');
}

# ---- the backend: state and one handler per message type ----

my %handles;
my $next_handle = 1;
my $thread_model = $THREAD_MODEL_SERIALIZE_ALL_REQUESTS;
my $backend_version = '1.0.0';

my @CALLBACKS = qw(load unload config config_complete thread_model
                   get_ready after_fork cleanup dump_plugin list_exports
                   default_export preconnect open close get_size
                   export_description block_size can_write can_flush
                   is_rotational can_trim can_zero can_fast_zero can_extents
                   can_fua can_multi_conn can_cache pread pwrite flush trim
                   zero cache extents);

sub _true { $_[0] ? JSON::PP::true : JSON::PP::false }

sub op_hello
{
    my ($req, $j) = @_;
    _fail ($EINVAL, "this backend speaks helper protocol version 1 only")
        unless defined $j->{protocol} && $j->{protocol} eq '1';
    $verbose = $j->{verbose} ? 1 : 0;
    _reply_json ($req, {
        protocol => 1,
        name => 'perl',
        version => $backend_version,
        longname => 'nbdkit perl backend',
        description => "Serve a disk from a Perl script written for "
                       . "nbdkit's perl plugin.",
        thread_model => 'serialize_all_requests',
        magic_config_key => 'script',
        config_help =>
            "script=<FILENAME>     (required) The Perl script to run.\n"
            . "[other arguments may be used by the script]",
        features => [],
        callbacks => \@CALLBACKS,
    });
}

sub op_config
{
    my ($req, $j) = @_;
    my ($key, $value) = ($j->{key}, $j->{value});
    _fail ($EINVAL, "CONFIG without a key and a value")
        unless defined $key && defined $value && !ref $key && !ref $value;
    if ($key eq 'script' && !defined $script) {
        _load_script ($value);
    }
    elsif (!defined $script) {
        _fail ($EINVAL, "'$key=$value': the first parameter must be the "
               . "script (nbdkit perl /path/to/plugin.pl [key=value ...])");
    }
    elsif (_has ('config')) {
        _call ('config', $EINVAL, 'config', $key, $value);
    }
    elsif ($key eq 'script') {
        _fail ($EINVAL, "script=$value: a script is already loaded "
               . "($script); give only one");
    }
    else {
        _fail ($EINVAL, "'$key=$value': $script takes no parameters (it has "
               . "no config sub)");
    }
    _reply_json ($req, {});
}

sub op_config_complete
{
    my ($req) = @_;
    _fail ($EINVAL, "no script given: use nbdkit perl /path/to/plugin.pl "
           . "[key=value ...]") unless defined $script;
    my @missing = grep { !_has ($_) } qw(open get_size pread);
    _fail ($EINVAL, "$script: the script has no " . join (' or ', @missing)
           . " sub" . (@missing > 1 ? 's' : '')
           . " (open, get_size and pread are required)") if @missing;
    _call ('config_complete', $EINVAL, 'config_complete')
        if _has ('config_complete');
    if (_has ('thread_model')) {
        my $m = _call ('thread_model', $EINVAL, 'thread_model');
        _fail ($EINVAL, "thread_model returned '" . ($m // 'undef')
               . "': use one of the \$Nbdkit::THREAD_MODEL_* values")
            unless defined $m && $m =~ /^[0-3]$/;
        $thread_model = $m;
    }
    _reply_json ($req, {});
}

sub op_get_ready
{
    my ($req) = @_;
    for my $name (qw(get_ready after_fork)) {
        _call ($name, $EINVAL, $name) if _has ($name);
    }
    _reply_json ($req, { thread_model => $thread_model == 0
                             ? 'serialize_connections'
                             : 'serialize_all_requests' });
}

sub op_dump
{
    my ($req) = @_;
    my %out = (perl_version => sprintf ("%vd", $^V));
    if (_has ('dump_plugin')) {
        my $text = '';
        {
            open (my $mem, '>', \$text) or last;
            my $old = select ($mem);
            eval { _call ('dump_plugin', $EIO, 'dump_plugin') };
            select ($old);
            close ($mem);
        }
        for my $line (split /\n/, $text) {
            $out{$1} = $2 if $line =~ /^([^=]+)=(.*)$/;
        }
    }
    _reply_json ($req, \%out);
}

sub _default_export
{
    my ($readonly, $is_tls) = @_;
    return '' unless _has ('default_export');
    my $name = _call ('default_export', $EINVAL, 'default_export',
                      $readonly, $is_tls);
    _fail ($EINVAL, "default_export returned no name") unless defined $name;
    _fail ($EINVAL, "default_export returned a name longer than 4096 bytes")
        if length ($name) > 4096;
    return "$name";
}

sub op_list_exports
{
    my ($req, $j) = @_;
    my ($readonly, $is_tls) = ($j->{readonly} ? 1 : 0, $j->{tls} ? 1 : 0);
    $tls = $is_tls;
    my @exports;
    if (_has ('list_exports')) {
        my @r = _call ('list_exports', $EINVAL, 'list_exports', $readonly,
                       $is_tls);
        @r = @{$r[0]} if @r == 1 && ref $r[0] eq 'ARRAY' &&
                         (!@{$r[0]} || ref $r[0][0] || @{$r[0]} != 2);
        for my $e (@r) {
            if (!ref $e && defined $e) {
                push @exports, { name => "$e" };
            }
            elsif (ref $e eq 'ARRAY' && defined $e->[0]) {
                my %x = (name => "$e->[0]");
                $x{description} = "$e->[1]" if defined $e->[1];
                push @exports, \%x;
            }
            else {
                _fail ($EINVAL, "list_exports returned an element that is "
                       . "neither a name nor [name, description]");
            }
        }
    }
    else {
        push @exports, { name => _default_export ($readonly, $is_tls) };
    }
    _reply_json ($req, { exports => \@exports });
}

sub op_default_export
{
    my ($req, $j) = @_;
    _reply_json ($req, { name => _default_export ($j->{readonly} ? 1 : 0,
                                                  $j->{tls} ? 1 : 0) });
}

# A can_* answer: the script's, else the default.
sub _ask
{
    my ($hd, $name, $default) = @_;
    return $default unless _has ($name);
    return scalar _call ($name, $EINVAL, $name, $hd->{h});
}

sub _capabilities
{
    my ($hd) = @_;
    my $size = _call ('get_size', $EINVAL, 'get_size', $hd->{h});
    _fail ($EINVAL, "get_size returned '" . ($size // 'undef') . "': the "
           . "size must be an integer from 0 to 2^63-1")
        unless defined $size && $size =~ /^\s*\d+\s*$/ &&
               length ($size =~ s/\s//gr) <= 19 && $size <= $MAX_OFFSET;
    my $can_write = _has ('pwrite') && !$hd->{readonly} &&
        _ask ($hd, 'can_write', 1) ? 1 : 0;
    my $can_flush = _has ('flush') && _ask ($hd, 'can_flush', 1) ? 1 : 0;
    my $can_trim = $can_write && _has ('trim') &&
        _ask ($hd, 'can_trim', 1) ? 1 : 0;
    my $native_zero = $can_write && _has ('zero') &&
        _ask ($hd, 'can_zero', 1) ? 1 : 0;
    my $can_zero = $can_write;
    my $can_fast_zero = $can_zero &&
        _ask ($hd, 'can_fast_zero', !$native_zero) ? 1 : 0;
    my $can_extents = _has ('extents') &&
        _ask ($hd, 'can_extents', 1) ? 1 : 0;
    my $fua = $can_write
        ? _ask ($hd, 'can_fua', $can_flush ? $FUA_EMULATE : $FUA_NONE)
        : $FUA_NONE;
    my $cache = _ask ($hd, 'can_cache',
                      _has ('cache') ? $CACHE_NATIVE : $CACHE_NONE);
    for ([can_fua => $fua], [can_cache => $cache]) {
        my ($what, $v) = @$_;
        _fail ($EINVAL, "$what returned '" . ($v // 'undef') . "': use one "
               . "of the \$Nbdkit::" . ($what eq 'can_fua' ? 'FUA' : 'CACHE')
               . "_* values")
            unless defined $v && $v =~ /^[012]$/;
    }
    $fua = $FUA_NONE if $fua == $FUA_EMULATE && !$can_flush;
    $cache = $CACHE_EMULATE if $cache == $CACHE_NATIVE && !_has ('cache');
    my $multi_conn = _ask ($hd, 'can_multi_conn', 0) ? 1 : 0;
    my $rotational = _ask ($hd, 'is_rotational', 0) ? 1 : 0;
    @$hd{qw(can_write can_flush can_trim can_zero native_zero can_fast_zero
            can_extents fua cache)} =
        ($can_write, $can_flush, $can_trim, $can_zero, $native_zero,
         $can_fast_zero, $can_extents, $fua + 0, $cache + 0);
    my %caps = (
        size => 0 + ($size =~ s/\s//gr),
        can_write => _true ($can_write), can_flush => _true ($can_flush),
        can_trim => _true ($can_trim), can_zero => _true ($can_zero),
        can_fast_zero => _true ($can_fast_zero),
        can_extents => _true ($can_extents),
        can_multi_conn => _true ($multi_conn),
        is_rotational => _true ($rotational),
        can_fua => $LEVEL_NAME{$fua}, can_cache => $LEVEL_NAME{$cache},
        name => $hd->{export},
    );
    if (_has ('block_size')) {
        my @b = _call ('block_size', $EINVAL, 'block_size', $hd->{h});
        @b = @{$b[0]} if @b == 1 && ref $b[0] eq 'ARRAY';
        _fail ($EINVAL, "block_size must return (minimum, preferred, "
               . "maximum)") unless @b == 3 && !grep { !defined || !/^\d+$/ } @b;
        $caps{block_size} = { minimum => 0 + $b[0], preferred => 0 + $b[1],
                              maximum => 0 + $b[2] };
    }
    if (_has ('export_description')) {
        my $d = _call ('export_description', $EINVAL, 'export_description',
                       $hd->{h});
        $caps{description} = "$d" if defined $d;
    }
    return \%caps;
}

sub op_open
{
    my ($req, $j) = @_;
    _fail ($EINVAL, "no script is loaded") unless defined $script;
    my $export = defined $j->{export} ? "$j->{export}" : '';
    my $readonly = $j->{readonly} ? 1 : 0;
    my $is_tls = $j->{tls} ? 1 : 0;
    ($export_name, $tls) = ($export, $is_tls);
    if ($export eq '') {
        $export = _default_export ($readonly, $is_tls);
        $export_name = $export;
    }
    _call ('preconnect', $EPERM, 'preconnect', $readonly)
        if _has ('preconnect');
    my $h = _call ('open', $EINVAL, 'open', $readonly);
    my $hd = { h => $h, export => $export, tls => $is_tls,
               readonly => $readonly };
    my $caps = eval { _capabilities ($hd) };
    if (!$caps) {
        my $e = $@;
        eval { _call ('close', $EIO, 'close', $h) } if _has ('close');
        die $e;
    }
    my $id;
    do {
        $id = $next_handle;
        $next_handle = $next_handle % 0xffffffff + 1;
    } while (exists $handles{$id});
    $handles{$id} = $hd;
    _reply_json ($req, $caps, $id);
}

sub _close_handle
{
    my $id = shift;
    my $hd = delete $handles{$id};
    if ($hd && _has ('close')) {
        ($export_name, $tls) = ($hd->{export}, $hd->{tls});
        eval { _call ('close', $EIO, 'close', $hd->{h}) };
    }
}

sub op_close
{
    my ($req) = @_;
    _close_handle ($req->{handle});
    _reply_json ($req, {});
}

sub op_shutdown { _reply_json ($_[0], {}) }

sub op_attach_fd
{
    # Never asked for: the channel is read without ancillary data.
    _reply_json ($_[0], {});
}

# ---- data ----

sub _handle
{
    my ($req) = @_;
    my $hd = $handles{$req->{handle}};
    _fail ($EINVAL, "unknown handle $req->{handle}") unless $hd;
    ($export_name, $tls) = ($hd->{export}, $hd->{tls});
    return $hd;
}

# Helper protocol flags to nbdkit flags; emulated FUA is not passed down.
sub _down_flags
{
    my ($hd, $f) = @_;
    my $flags = 0;
    $flags |= $FLAG_FUA if $f & $HP_FUA && $hd->{fua} == $FUA_NATIVE;
    $flags |= $FLAG_MAY_TRIM if $f & $HP_MAY_TRIM;
    $flags |= $FLAG_FAST_ZERO if $f & $HP_FAST_ZERO;
    $flags |= $FLAG_REQ_ONE if $f & $HP_REQ_ONE;
    return $flags;
}

sub _finish_fua
{
    my ($hd, $f) = @_;
    _call ('flush', $EIO, 'flush', $hd->{h}, 0)
        if $f & $HP_FUA && $hd->{fua} == $FUA_EMULATE;
}

sub _pread
{
    my ($hd, $count, $offset) = @_;
    my $buf = _call ('pread', $EIO, 'pread', $hd->{h}, $count, $offset, 0);
    _fail ($EIO, "pread returned undef") unless defined $buf;
    $buf = "$buf";
    utf8::downgrade ($buf, 1)
        or _fail ($EIO, "pread returned a string of characters, not bytes");
    _fail ($EIO, "pread returned " . length ($buf) . " bytes, fewer than "
           . "the $count asked for") if length ($buf) < $count;
    return length ($buf) == $count ? $buf : substr ($buf, 0, $count);
}

sub op_pread
{
    my ($req) = @_;
    my $hd = _handle ($req);
    _reply ($req, 0, _pread ($hd, $req->{count}, $req->{offset}));
}

sub op_pwrite
{
    my ($req) = @_;
    my $hd = _handle ($req);
    _fail ($EPERM, "pwrite: the export is read-only") unless $hd->{can_write};
    _call ('pwrite', $EIO, 'pwrite', $hd->{h}, $req->{payload},
           $req->{offset}, _down_flags ($hd, $req->{flags}));
    _finish_fua ($hd, $req->{flags});
    _reply ($req, 0);
}

sub op_flush
{
    my ($req) = @_;
    my $hd = _handle ($req);
    _fail ($EINVAL, "flush: the export cannot flush") unless $hd->{can_flush};
    _call ('flush', $EIO, 'flush', $hd->{h}, 0);
    _reply ($req, 0);
}

sub op_trim
{
    my ($req) = @_;
    my $hd = _handle ($req);
    _fail ($hd->{can_write} ? $EINVAL : $EPERM,
           "trim: not supported by this export") unless $hd->{can_trim};
    _call ('trim', $EIO, 'trim', $hd->{h}, $req->{count}, $req->{offset},
           _down_flags ($hd, $req->{flags}));
    _finish_fua ($hd, $req->{flags});
    _reply ($req, 0);
}

sub op_zero
{
    my ($req) = @_;
    my $hd = _handle ($req);
    _fail ($hd->{can_write} ? $EINVAL : $EPERM,
           "zero: not supported by this export") unless $hd->{can_zero};
    my ($count, $offset, $f) = @$req{qw(count offset flags)};
    my $fast = $f & $HP_FAST_ZERO;
    my $done = 0;
    if ($hd->{native_zero}) {
        my $ok = eval {
            _call ('zero', $EIO, 'zero', $hd->{h}, $count, $offset,
                   _down_flags ($hd, $f));
            1;
        };
        if ($ok) {
            $done = 1;
        }
        else {
            my $e = $@;
            die $e if $fast || ref $e ne 'HASH' || !defined $e->{host} ||
                      ($e->{host} != Errno::ENOTSUP () &&
                       $e->{host} != Errno::EOPNOTSUPP ());
            debug ("zero: not supported here, writing zeroes instead");
        }
    }
    if (!$done) {
        _fail ($ENOTSUP, "zero: fast zeroing is not supported") if $fast;
        my $chunk = 1024 * 1024;
        while ($count > 0) {
            my $n = $count < $chunk ? $count : $chunk;
            _call ('pwrite', $EIO, 'pwrite', $hd->{h}, "\0" x $n, $offset, 0);
            $count -= $n;
            $offset += $n;
        }
        _call ('flush', $EIO, 'flush', $hd->{h}, 0)
            if $f & $HP_FUA && $hd->{fua} == $FUA_NATIVE && _has ('flush');
    }
    _finish_fua ($hd, $f);
    _reply ($req, 0);
}

sub op_cache
{
    my ($req) = @_;
    my $hd = _handle ($req);
    my ($count, $offset) = @$req{qw(count offset)};
    _fail ($EINVAL, "cache: not supported by this export")
        if $hd->{cache} == $CACHE_NONE;
    if ($hd->{cache} == $CACHE_NATIVE) {
        _call ('cache', $EIO, 'cache', $hd->{h}, $count, $offset, 0);
    }
    else {
        while ($count > 0) {
            my $n = $count < 1048576 ? $count : 1048576;
            _pread ($hd, $n, $offset);
            $count -= $n;
            $offset += $n;
        }
    }
    _reply ($req, 0);
}

# The script's extents ([offset, length, type] array refs, or hash refs
# with those keys) as the wire's contiguous entries from the request's
# offset on, merged and clipped.
sub op_extents
{
    my ($req) = @_;
    my $hd = _handle ($req);
    _fail ($EINVAL, "extents: not supported by this export")
        unless $hd->{can_extents};
    my ($count, $offset, $f) = @$req{qw(count offset flags)};
    my $req_one = $f & $HP_REQ_ONE;
    my @r = _call ('extents', $EIO, 'extents', $hd->{h}, $count, $offset,
                   _down_flags ($hd, $f));
    @r = @{$r[0]} if @r == 1 && ref $r[0] eq 'ARRAY' && ref $r[0][0];
    my $end = $offset + $count;
    my (@out, $pos);
    for my $e (@r) {
        my ($eoff, $elen, $etype) = ref $e eq 'HASH'
            ? @$e{qw(offset length type)}
            : ref $e eq 'ARRAY' ? @$e : ();
        _fail ($EIO, "extents: each extent must be [offset, length, type]")
            unless defined $eoff && defined $elen && defined $etype;
        next if $elen <= 0 || $eoff + $elen <= $offset;
        if (!defined $pos) {
            _fail ($EIO, "extents: the first extent starts at $eoff, after "
                   . "the offset $offset asked for") if $eoff > $offset;
            $elen -= $offset - $eoff;
            $eoff = $offset;
        }
        elsif ($eoff != $pos) {
            _fail ($EIO, "extents: the extent at $eoff does not follow the "
                   . "previous one, which ends at $pos");
        }
        $etype &= 3;
        if (@out && $out[-1][1] == $etype) {
            $out[-1][0] += $elen;
        }
        else {
            push @out, [$elen, $etype];
        }
        $pos = $eoff + $elen;
        last if $pos >= $end || $req_one;
    }
    _fail ($EIO, "extents returned no extent for offset $offset")
        unless @out;
    @out = ($out[0]) if $req_one;
    _reply ($req, 0, join ('', map { pack ('Q> N', @$_) } @out));
}

my %OPS = (
    $HELLO => \&op_hello, $CONFIG => \&op_config,
    $CONFIG_COMPLETE => \&op_config_complete, $GET_READY => \&op_get_ready,
    $DUMP => \&op_dump, $LIST_EXPORTS => \&op_list_exports,
    $DEFAULT_EXPORT => \&op_default_export, $OPEN => \&op_open,
    $CLOSE => \&op_close, $SHUTDOWN => \&op_shutdown,
    $ATTACH_FD => \&op_attach_fd,
    $PREAD => \&op_pread, $PWRITE => \&op_pwrite, $FLUSH => \&op_flush,
    $TRIM => \&op_trim, $ZERO => \&op_zero, $CACHE => \&op_cache,
    $EXTENTS => \&op_extents,
);

# End of the channel: close every handle, then clean up.
sub _finish
{
    _close_handle ($_) for sort { $a <=> $b } keys %handles;
    for my $name (qw(cleanup unload)) {
        eval { _call ($name, $EIO, $name) } if _has ($name);
    }
}

sub _serve
{
    while (1) {
        my $req = _read_frame ();
        if (!defined $req) {
            _finish ();
            return 0;
        }
        my $t = $req->{type};
        if ($t == $PING) {
            # Answered as soon as read.  Requests run here, one at a
            # time, so none is read during a callback: this backend does
            # not offer "ping" (the front end never sends it), but
            # answers one all the same.
            _reply ($req, 0);
            next;
        }
        my $arg;
        if ($t <= $ATTACH_FD) {
            $arg = $req->{payload} eq '' ? {}
                : eval { $json->decode ($req->{payload}) };
            _violation ("the payload of control message $t is not a JSON "
                        . "object") unless ref $arg eq 'HASH';
        }
        my $ok = eval { $OPS{$t}->($req, $arg); 1 };
        if (!$ok) {
            my $e = $@;
            die $e unless ref $e eq 'HASH' && $e->{code};
            my $msg = $e->{msg};
            utf8::encode ($msg) if utf8::is_utf8 ($msg);
            _reply ($req, $e->{code}, $msg);
        }
        if ($t == $SHUTDOWN) {
            _finish ();
            return 0;
        }
    }
}

# Run the backend on the channel named by $NBDKIT_HELPER_FD.
sub _main
{
    $backend_version = shift // $backend_version;
    my $fd = $ENV{NBDKIT_HELPER_FD};
    if (grep { $_ eq '--help' } @ARGV or !defined $fd) {
        print STDERR
            "nbdkit-perl-backend: the perl backend of nbdkit, which runs "
            . "plugin scripts\nwritten for nbdkit's perl plugin.  It is "
            . "started by the server, not by hand:\n\n"
            . "  nbdkit perl /path/to/plugin.pl [key=value ...]\n\n"
            . "See nbdkit-perl-backend(1).\n";
        return (grep { $_ eq '--help' } @ARGV) ? 0 : 1;
    }
    if ($fd !~ /^\d+$/ || !open ($ch, '+<&=', $fd)) {
        print STDERR "nbdkit-perl-backend: NBDKIT_HELPER_FD=$fd: not a "
            . "usable channel: $!\n";
        return 1;
    }
    binmode ($ch);
    $SIG{PIPE} = 'IGNORE';
    # The server stops a backend with SIGTERM, and sends it when the
    # server dies (PR_SET_PDEATHSIG): its default action, to die at once,
    # is the one wanted; never ignore or catch it.
    $SIG{TERM} = 'DEFAULT';
    STDERR->autoflush (1);
    my $r = eval { _serve () };
    return $r if defined $r;
    my $e = $@;
    if (ref $e eq 'HASH' && $e->{violation}) {
        _log ("error: protocol violation from the front end: "
              . $e->{violation});
        return 1;
    }
    if (ref $e eq 'HASH' && $e->{epipe}) {
        eval { _finish () };
        return 0;
    }
    _log ("error: " . _one_line (ref $e eq 'HASH' ? ($e->{msg} // '?') : $e));
    return 1;
}

1;
