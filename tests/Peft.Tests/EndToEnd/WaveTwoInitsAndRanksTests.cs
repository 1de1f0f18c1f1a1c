using System.Linq;
using Peft.Runtime.Training;
using Peft.Tests.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Tests.EndToEnd;

/// <summary>EVA, AdaLoRA and IncreLoRA declared by attribute on one model, each a named adapter, all active at once.</summary>
[PeftModel]
public sealed partial class EvaAndAdaptiveNet : Module<Tensor, Tensor>
{
    [AdaLoRA(2, InitRank = 4, Tinit = 3, Tfinal = 5, DeltaT = 2, TotalSteps = 24, Name = "ada")]
    private Module<Tensor, Tensor> q = Linear(16, 24);

    [IncreLoRA(3, InitRank = 1, MaxRank = 4, TopH = 1, Warmup = 2, Interval = 2, Name = "inc")]
    private Module<Tensor, Tensor> v = Linear(16, 16);

    [LoRA(4, Alpha = 8, Init = LoRAInit.Eva, Name = "eva")]
    private Module<Tensor, Tensor> f = Linear(16, 16);

    private Module<Tensor, Tensor> head = Linear(56, 5);

    public EvaAndAdaptiveNet() : base(nameof(EvaAndAdaptiveNet)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

public sealed class WaveTwoInitsAndRanksTests
{
    private static readonly string[] Adapters = { "ada", "inc", "eva" };

    [Fact]
    public void EvaAdaLoRAAndIncreLoRATrainTogetherSaveReloadAndMergeExactly()
    {
        using var scope = NewDisposeScope();
        manual_seed(41);
        var model = new EvaAndAdaptiveNet();
        model.SetActiveAdapters(Adapters);
        var x = randn(64, 16);
        var y = sin(x[.., ..5].mul(2));

        // EVA's layer refuses to train until its data-driven init ran.
        Assert.Throws<System.InvalidOperationException>(() =>
            new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-2)).Step(() => functional.mse_loss(model.forward(x), y)));
        model.InitializeEva(new[] { x[..32], x[32..] });
        var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-2));
        for (int i = 0; i < 24; i++) trainer.Step(() => functional.mse_loss(model.forward(x), y));

        model.eval();
        Tensor expected;
        using (no_grad()) expected = model.forward(x).detach().clone();
        model.MergeAdapters();
        using (no_grad()) TensorAssert.Close(expected, model.forward(x), atol: 1e-5);
        model.UnmergeAdapters();

        using var folder = new TempFolder();
        model.SaveAdapters(folder.Path);

        manual_seed(41);
        var again = new EvaAndAdaptiveNet();
        again.SetActiveAdapters(Adapters);
        again.LoadAdapters(folder.Path);
        again.eval();
        using (no_grad())
        {
            TensorAssert.Close(expected, again.forward(x), atol: 1e-5);
            again.MergeAdapters();
            TensorAssert.Close(expected, again.forward(x), atol: 1e-5);
        }
    }
}
