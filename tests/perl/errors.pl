# A 4 MiB RAM disk whose callbacks fail on purpose: reads from 3 MiB die
# (EIO), writes from 2 MiB fail with set_error(ENOSPC).
use strict;
use warnings;
use POSIX ();

my $disk = "\0" x (4 * 1024 * 1024);

sub open { return {} }

sub get_size { length ($disk) }

sub pread
{
    my ($h, $count, $offset) = @_;
    die "the sector at $offset is unreadable\n"
        if $offset + $count > 3 * 1024 * 1024;
    return substr ($disk, $offset, $count);
}

sub pwrite
{
    my ($h, $buf, $offset) = @_;
    if ($offset + length ($buf) > 2 * 1024 * 1024) {
        Nbdkit::set_error (POSIX::ENOSPC ());
        die "the disk is full beyond 2 MiB\n";
    }
    substr ($disk, $offset, length ($buf)) = $buf;
}
