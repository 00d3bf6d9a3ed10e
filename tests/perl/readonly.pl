# No pwrite: a read-only 1 MiB disk whose every byte is the low byte of
# its offset divided by 512.
use strict;
use warnings;

sub open { return 1 }

sub get_size { 1024 * 1024 }

sub pread
{
    my ($h, $count, $offset) = @_;
    return join ('', map { chr (($_ >> 9) & 0xff) }
                     $offset .. $offset + $count - 1);
}
