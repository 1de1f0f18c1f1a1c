using System;
using System.Collections.Generic;
using System.Linq;
using Peft.Runtime.Training;
using Peft.Tests.EndToEnd;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Training;

/// <summary>A NaN or Inf in training stops with a clear message and leaves the adapter as the last good step left it.</summary>
public sealed class AdapterTrainerTests
{
    private static (Block Model, AdapterTrainer Trainer, Tensor X, Tensor Y) Setup()
    {
        manual_seed(31);
        var model = new Block();
        var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-2)) { Name = "LoRA fine-tune" };
        return (model, trainer, randn(8, 32), randint(0, 10, new long[] { 8 }));
    }

    private static Dictionary<string, Tensor> Snapshot(Block model) =>
        model.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());

    private static void AssertUnchanged(Dictionary<string, Tensor> snapshot, Block model)
    {
        foreach (var (name, value) in model.state_dict())
            Assert.True(TensorAssert.Same(snapshot[name], value), $"{name} changed after the failed step");
    }

    [Fact]
    public void FiniteStepsTrainTheAdapters()
    {
        using var scope = NewDisposeScope();
        var (model, trainer, x, y) = Setup();
        double first = trainer.Step(() => nn.functional.cross_entropy(model.forward(x), y));
        double last = first;
        for (int i = 0; i < 20; i++) last = trainer.Step(() => nn.functional.cross_entropy(model.forward(x), y));
        Assert.Equal(21, trainer.CompletedSteps);
        Assert.True(last < first, $"loss went from {first} to {last}");
    }

    [Theory]
    [InlineData(float.NaN, "NaN")]
    [InlineData(float.PositiveInfinity, "+Inf")]
    public void ANonFiniteLossStopsBeforeAnythingIsUpdated(float poison, string shown)
    {
        using var scope = NewDisposeScope();
        var (model, trainer, x, y) = Setup();
        for (int i = 0; i < 3; i++) trainer.Step(() => nn.functional.cross_entropy(model.forward(x), y));
        var snapshot = Snapshot(model);

        var ex = Assert.Throws<NonFiniteLossException>(() => trainer.Step(() => nn.functional.cross_entropy(model.forward(x), y) * poison));
        Assert.IsAssignableFrom<InvalidOperationException>(ex);
        Assert.Equal(4, ex.Step);
        Assert.Null(ex.Parameter);
        Assert.Contains("LoRA fine-tune: the loss is " + shown + " at step 4", ex.Message);
        Assert.Contains("parameters are those after step 3", ex.Message);
        Assert.Equal(3, trainer.CompletedSteps);
        AssertUnchanged(snapshot, model);

        // The model is still good: the next finite step trains from where step 3 left it.
        trainer.Step(() => nn.functional.cross_entropy(model.forward(x), y));
        Assert.Equal(4, trainer.CompletedSteps);
    }

    [Fact]
    public void ANonFiniteGradientUnderAFiniteLossNamesTheParameter()
    {
        using var scope = NewDisposeScope();
        var (model, trainer, x, y) = Setup();
        trainer.Step(() => nn.functional.cross_entropy(model.forward(x), y));
        var snapshot = Snapshot(model);
        var loraB = model.named_parameters().First(p => p.name == "v.lora_B.default.weight").parameter;

        // sqrt at 0 has value 0 and an infinite slope: the loss stays finite, the gradient does not.
        var ex = Assert.Throws<NonFiniteLossException>(() => trainer.Step(() =>
            nn.functional.cross_entropy(model.forward(x), y) + (loraB - loraB.detach()).abs().sqrt().sum()));
        Assert.Equal(2, ex.Step);
        Assert.Equal("v.lora_B.default.weight", ex.Parameter);
        Assert.True(double.IsFinite(ex.Loss));
        Assert.Contains("the gradient of 'v.lora_B.default.weight' holds NaN or Inf at step 2", ex.Message);
        AssertUnchanged(snapshot, model);
        Assert.All(model.TrainableParameters(), p => Assert.True(p.grad is null || p.grad.count_nonzero().item<long>() == 0));
    }

    [Fact]
    public void MaxGradNormClipsTheUpdate()
    {
        using var scope = NewDisposeScope();
        manual_seed(32);
        var model = new Block();
        var before = model.TrainableParameters().Select(p => p.detach().clone()).ToList();
        // Plain SGD with lr 1: the update is exactly the (clipped) gradient.
        var trainer = new AdapterTrainer(model, optim.SGD(model.TrainableParameters(), 1.0)) { MaxGradNorm = 1e-3 };
        var x = randn(8, 32) * 100;
        trainer.Step(() => model.forward(x).pow(2).mean());
        double squared = model.TrainableParameters().Zip(before, (p, b) => (p.detach() - b).pow(2).sum().item<float>()).Sum();
        Assert.InRange(Math.Sqrt(squared), 1e-4, 1.0001e-3);
    }
}
