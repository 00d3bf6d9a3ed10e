# A disk kept in a file (file=PATH), so that what was written and
# flushed survives a restart of the backend process.
use strict;
use warnings;
use Fcntl qw(O_RDWR O_RDONLY SEEK_SET);
use IO::Handle ();

my $path;

sub config
{
    my ($key, $value) = @_;
    die "unknown parameter $key (use file=PATH)\n" unless $key eq 'file';
    $path = $value;
}

sub config_complete
{
    die "file=PATH is required\n" unless defined $path;
}

sub open
{
    my $readonly = shift;
    sysopen (my $fh, $path, $readonly ? O_RDONLY : O_RDWR)
        or die "$path: $!\n";
    binmode ($fh);
    return $fh;
}

sub get_size { -s $_[0] }

sub pread
{
    my ($fh, $count, $offset) = @_;
    sysseek ($fh, $offset, SEEK_SET) or die "seek: $!\n";
    my $buf = '';
    while (length ($buf) < $count) {
        my $r = sysread ($fh, $buf, $count - length ($buf), length ($buf));
        die "read: $!\n" unless defined $r;
        die "short read at $offset\n" if $r == 0;
    }
    return $buf;
}

sub pwrite
{
    my ($fh, $buf, $offset) = @_;
    sysseek ($fh, $offset, SEEK_SET) or die "seek: $!\n";
    my $done = 0;
    while ($done < length ($buf)) {
        my $r = syswrite ($fh, $buf, length ($buf) - $done, $done);
        die "write: $!\n" unless defined $r;
        $done += $r;
    }
}

sub flush
{
    my $fh = shift;
    $fh->sync or die "fsync: $!\n";
}
