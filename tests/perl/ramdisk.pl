# A RAM disk in the style of nbdkit's perl plugin examples: the disk is
# one string.  Parameters: size=SIZE, and note=TEXT (shown in the
# export's description, to check that parameters arrive).
use strict;
use warnings;

my $size = 4 * 1024 * 1024;
my $disk;
my @notes;

sub config
{
    my ($key, $value) = @_;
    if ($key eq 'size') {
        $size = Nbdkit::parse_size ($value);
    }
    elsif ($key eq 'note') {
        push @notes, $value;
    }
    else {
        die "unknown parameter $key=$value\n";
    }
}

sub config_complete
{
    $disk = "\0" x $size;
}

sub open
{
    my $readonly = shift;
    return { readonly => $readonly };
}

sub get_size { length ($disk) }

sub can_multi_conn { 1 }

sub export_description { "a perl RAM disk; notes: @notes" }

sub pread
{
    my ($h, $count, $offset, $flags) = @_;
    return substr ($disk, $offset, $count);
}

sub pwrite
{
    my ($h, $buf, $offset, $flags) = @_;
    substr ($disk, $offset, length ($buf)) = $buf;
}

sub flush { }

sub trim
{
    my ($h, $count, $offset, $flags) = @_;
    substr ($disk, $offset, $count) = "\0" x $count;
}

sub zero
{
    my ($h, $count, $offset, $flags) = @_;
    substr ($disk, $offset, $count) = "\0" x $count;
}
