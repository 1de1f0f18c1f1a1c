using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Peft.Runtime.Distributed;
using Peft.Runtime.Training;
using Peft.Tests.EndToEnd;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Distributed;

/// <summary>What runs without mpirun: sharding, the single-process communicator, and the trainer's distributed path on it.</summary>
public sealed class DistributedTests
{
    [Fact]
    public void ShardsPartitionTheBatchesInOrder()
    {
        var batches = Enumerable.Range(0, 10).ToList();
        var shards = Enumerable.Range(0, 3).Select(r => batches.Shard(r, 3).ToList()).ToList();
        Assert.Equal(new[] { 0, 3, 6, 9 }, shards[0]);
        Assert.Equal(new[] { 1, 4, 7 }, shards[1]);
        Assert.Equal(new[] { 2, 5, 8 }, shards[2]);
        Assert.Equal(batches, shards.SelectMany(s => s).Order());
        Assert.Equal(7, DataSharding.BatchIndex(step: 3, rank: 1, size: 2));
        Assert.True(DataSharding.IsMine(7, 1, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => batches.Shard(2, 2).ToList());
    }

    [Fact]
    public void NextShardKeepsThisRanksDrawAndHandsBackTheOthers()
    {
        var random = new Random(5);
        var discarded = new List<int>();
        var rank1 = new FakeRank(1, 3);
        int mine = DataSharding.NextShard(() => random.Next(1000), rank1, discarded.Add);
        var again = new Random(5);
        int[] draws = { again.Next(1000), again.Next(1000), again.Next(1000) };
        Assert.Equal(draws[1], mine);
        Assert.Equal(new[] { draws[0], draws[2] }, discarded);
    }

    [Fact]
    public void OutsideMpirunTheCommunicatorIsASingleProcess()
    {
        if (Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is { Length: > 0 }) return; // this test run is itself under mpirun
        var communicator = Communicator.FromEnvironment();
        Assert.IsType<SingleProcessCommunicator>(communicator);
        Assert.Equal((0, 1), (communicator.Rank, communicator.Size));
        using var t = tensor(new[] { 1f, 2f });
        communicator.AllReduceMean(t);
        communicator.Broadcast(t, 0);
        communicator.Barrier();
        Assert.Equal(new[] { 1f, 2f }, t.data<float>().ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => communicator.Broadcast(t, 1));
    }

    [Fact]
    public void TheDistributedPathOnOneRankTrainsExactlyAsWithout()
    {
        using var scope = NewDisposeScope();
        float[] Train(ICommunicator? communicator)
        {
            manual_seed(31);
            var model = new Block();
            var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-2)) { Name = "LoRA", Communicator = communicator, MaxGradNorm = 1.0 };
            for (int s = 0; s < 5; s++)
            {
                var (x, y) = MpiChild.Batch(s);
                trainer.Step(() => nn.functional.cross_entropy(model.forward(x), y));
            }
            return MpiChild.TrainableValues(model);
        }
        Assert.Equal(Train(null), Train(SingleProcessCommunicator.Instance));
    }

    [Theory]
    [InlineData(float.NaN, "NaN")]
    [InlineData(float.NegativeInfinity, "-Inf")]
    public void ANonFiniteLossNamesTheRankAndUpdatesNothing(float poison, string shown)
    {
        using var scope = NewDisposeScope();
        manual_seed(31);
        var model = new Block();
        var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-2)) { Name = "LoRA", Communicator = SingleProcessCommunicator.Instance };
        var (x, y) = MpiChild.Batch(0);
        trainer.Step(() => nn.functional.cross_entropy(model.forward(x), y));
        float[] before = MpiChild.TrainableValues(model);
        var ex = Assert.Throws<NonFiniteLossException>(() => trainer.Step(() => nn.functional.cross_entropy(model.forward(x), y) * poison));
        Assert.Equal(0, ex.Rank);
        Assert.Equal(2, ex.Step);
        Assert.Contains($"the loss is {shown} on rank 0 of 1 at step 2", ex.Message);
        Assert.Equal(before, MpiChild.TrainableValues(model));
        Assert.Equal(1, trainer.CompletedSteps);
        // And training goes on after it.
        trainer.Step(() => nn.functional.cross_entropy(model.forward(x), y));
        Assert.Equal(2, trainer.CompletedSteps);
    }

    [Fact]
    public void ANonFiniteGradientNamesTheRankAndTheParameter()
    {
        using var scope = NewDisposeScope();
        manual_seed(31);
        var model = new Block();
        var trainer = new AdapterTrainer(model, optim.SGD(model.TrainableParameters(), 1e-2)) { Name = "LoRA", Communicator = SingleProcessCommunicator.Instance };
        var (x, y) = MpiChild.Batch(0);
        // sqrt at 0 has an infinite derivative: a finite loss with an Inf gradient.
        var ex = Assert.Throws<NonFiniteLossException>(() => trainer.Step(() =>
            nn.functional.cross_entropy(model.forward(x), y) + model.TrainableParameters().First().mul(0).sum().sqrt()));
        Assert.Equal(0, ex.Rank);
        Assert.NotNull(ex.Parameter);
        Assert.Contains($"the gradient of '{ex.Parameter}' holds NaN or Inf on rank 0 of 1 at step 1", ex.Message);
        Assert.Equal(0, trainer.CompletedSteps);
    }

    [Fact]
    public void TheCommunicatorCannotChangeAfterTheFirstStep()
    {
        using var scope = NewDisposeScope();
        var model = new Block();
        var trainer = new AdapterTrainer(model, optim.SGD(model.TrainableParameters(), 1e-2));
        var (x, y) = MpiChild.Batch(0);
        trainer.Step(() => nn.functional.cross_entropy(model.forward(x), y));
        Assert.Throws<InvalidOperationException>(() => trainer.Communicator = SingleProcessCommunicator.Instance);
    }

    [Fact]
    public void SaveAdaptersWritesThePeftFiles()
    {
        string dir = Path.Combine(Path.GetTempPath(), "peft-save-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var scope = NewDisposeScope();
            var model = new Block();
            var trainer = new AdapterTrainer(model, optim.SGD(model.TrainableParameters(), 1e-2)) { Communicator = SingleProcessCommunicator.Instance };
            trainer.SaveAdapters(dir);
            Assert.True(File.Exists(Path.Combine(dir, "adapter_model.safetensors")));
            Assert.True(File.Exists(Path.Combine(dir, "adapter_config.json")));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    private sealed class FakeRank(int rank, int size) : ICommunicator
    {
        public int Rank => rank;
        public int Size => size;
        public void AllReduceMean(Tensor tensor) { }
        public void Broadcast(Tensor tensor, int root) { }
        public void Barrier() { }
    }
}
