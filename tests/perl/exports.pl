# Two exports, listed with a description for the first.
use strict;
use warnings;

sub list_exports { return (["alpha", "the first disk"], "beta") }

sub default_export { "alpha" }

sub open { return Nbdkit::export_name () }

sub get_size { $_[0] eq 'beta' ? 2 * 1024 * 1024 : 1024 * 1024 }

sub pread { substr ($_[0], 0, 1) x $_[1] }
