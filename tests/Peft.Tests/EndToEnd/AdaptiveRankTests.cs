using System.IO;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.Training;
using Peft.Tests.Adapters;
using Peft.Tests.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Tests.EndToEnd;

/// <summary>AdaLoRA and IncreLoRA declared by attribute as named adapters: two AdaLoRA adapters on q and v, one IncreLoRA on f.</summary>
[PeftModel]
public sealed partial class AdaptiveRankNet : Module<Tensor, Tensor>
{
    [AdaLoRA(2, InitRank = 4, Tinit = 3, Tfinal = 5, DeltaT = 2, TotalSteps = 24, Name = "ada")]
    [AdaLoRA(1, InitRank = 3, Tinit = 2, Tfinal = 4, TotalSteps = 24, Name = "ada_b")]
    private Module<Tensor, Tensor> q = Linear(16, 24);

    [AdaLoRA(2, InitRank = 4, Tinit = 3, Tfinal = 5, DeltaT = 2, TotalSteps = 24, Name = "ada")]
    [AdaLoRA(1, InitRank = 3, Tinit = 2, Tfinal = 4, TotalSteps = 24, Name = "ada_b")]
    private Module<Tensor, Tensor> v = Linear(16, 16);

    [IncreLoRA(3, InitRank = 1, MaxRank = 4, TopH = 1, Warmup = 2, Interval = 2, Name = "inc")]
    private Module<Tensor, Tensor> f = Linear(16, 16);

    private Module<Tensor, Tensor> head = Linear(56, 5);

    public AdaptiveRankNet() : base(nameof(AdaptiveRankNet)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

public sealed class AdaptiveRankTests
{
    [Fact]
    public void NamedAdaLoRAAndIncreLoRAAdaptersTrainSaveReloadAndMergeExactly()
    {
        using var scope = NewDisposeScope();
        manual_seed(21);
        var model = new AdaptiveRankNet();
        var x = randn(32, 16);
        var y = sin(x[.., ..5].mul(2));

        // Each adapter set trains in turn with its own trainer; only the active adapters are allocated.
        foreach (var set in new[] { new[] { "ada", "inc" }, new[] { "ada_b" } })
        {
            model.SetActiveAdapters(set);
            var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-2));
            for (int i = 0; i < 24; i++) trainer.Step(() => functional.mse_loss(model.forward(x), y));
        }

        int Kept(IPeftModel m, string adapter) => m.AdapterLayers.Where(l => l.Layer is AdaLoRALinear && l.Layer.AdapterNames.Contains(adapter))
            .Sum(l => ((AdaLoRALinear)l.Layer).KeptRanks(adapter).Count(k => k));
        Assert.Equal(2 * 2, Kept(model, "ada"));
        Assert.Equal(1 * 2, Kept(model, "ada_b"));
        Assert.Equal(3, ((IncreLoRALinear)model.AdapterLayers.Single(l => l.Path == "f").Layer).Rank("inc"));

        model.eval();
        var sets = new[] { new[] { "ada", "inc" }, new[] { "ada_b" } };
        var outputs = sets.Select(set =>
        {
            model.SetActiveAdapters(set);
            using var _ = no_grad();
            return model.forward(x).detach().clone();
        }).ToList();
        Assert.False(TensorAssert.Same(outputs[0], outputs[1]));

        using var folder = new TempFolder();
        model.SaveAdapters(folder.Path);
        Assert.True(File.Exists(Path.Combine(folder.Path, "ada", "adapter_config.json")));
        Assert.True(File.Exists(Path.Combine(folder.Path, "inc", "adapter_config.json")));

        manual_seed(99);
        var again = new AdaptiveRankNet();
        AdaLoRATests.CopyBase(model, again);
        again.LoadAdapters(folder.Path);
        again.eval();
        for (int i = 0; i < sets.Length; i++)
        {
            again.SetActiveAdapters(sets[i]);
            using var _ = no_grad();
            TensorAssert.Close(outputs[i], again.forward(x), atol: 1e-6);
            again.MergeAdapters();
            TensorAssert.Close(outputs[i], again.forward(x), atol: 1e-5);
            again.UnmergeAdapters();
            TensorAssert.Close(outputs[i], again.forward(x), atol: 1e-5);
        }

        // A mixed batch routes rows to the adapters as running each alone does.
        again.SetActiveAdapters("ada", "inc");
        using (again.MixedBatch(Enumerable.Range(0, 32).Select(i => i % 2 == 0 ? "ada_b" : "__base__").ToArray()))
        using (no_grad())
        {
            var mixed = again.forward(x);
            TensorAssert.Close(outputs[1].index_select(0, arange(0, 32, 2)), mixed.index_select(0, arange(0, 32, 2)), atol: 1e-6);
        }
    }
}
