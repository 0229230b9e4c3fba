#!/usr/bin/perl
# A site-log writer exactly as the original memcached idiom has it (memipc's seed layout), through Debian's
# libcache-memcached-perl: `incr Counter`; when the counter is missing, `add Counter 0` and `incr` again;
# then `add logentry-<n>` with the line. Used by test/log/interop.test.ts; prints "<n>\t<line>" per entry.
#
#   writer.pl HOST PORT COUNT TAG [COUNTER [ENTRY_PREFIX]]   writes COUNT lines "<TAG> <i> hello"
use strict;
use warnings;
use Cache::Memcached;

my ($host, $port, $count, $tag, $counter, $prefix) = @ARGV;
die "usage: writer.pl HOST PORT COUNT TAG [COUNTER [ENTRY_PREFIX]]\n" unless defined $tag;
$counter = "Counter" unless defined $counter;
$prefix = "logentry-" unless defined $prefix;

my $mc = Cache::Memcached->new({ servers => ["$host:$port"], connect_timeout => 5, select_timeout => 10 });
my @out;
for my $i (1 .. $count) {
    my $line = "$tag $i hello";
    my $n = $mc->incr($counter);
    unless (defined $n) {
        $mc->add($counter, 0);
        $n = $mc->incr($counter);
        die "incr $counter failed after add: is memcached at $host:$port?\n" unless defined $n;
    }
    $mc->add("$prefix$n", $line) or die "$prefix$n already exists: the counter handed out a number twice\n";
    push @out, "$n\t$line\n";
}
$mc->disconnect_all;
print @out;
