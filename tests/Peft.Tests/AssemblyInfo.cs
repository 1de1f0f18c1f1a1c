using Xunit;

// libtorch keeps one global random generator: tests that seed it (manual_seed) to build identical models must not
// interleave with other classes drawing from it. Running classes one after another also keeps the two cores of CI
// for libtorch's own threads instead of oversubscribing them.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
