# A script that does not compile.
use strict;

sub open { return 1 }

sub get_size { 1024 +* }
