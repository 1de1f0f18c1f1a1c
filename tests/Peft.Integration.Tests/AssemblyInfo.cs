using Xunit;

// Each test here builds or runs whole programs on a 2-core machine: one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
