using System.IO;
using System.Linq;
using Peft.Runtime.Training;
using Peft.Tests.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Tests.EndToEnd;

/// <summary>LaMDA, LoLDU, RandLoRA and SaRA declared by attribute on one model, each a named adapter, all active at once.</summary>
[PeftModel]
public sealed partial class LiteratureNet : Module<Tensor, Tensor>
{
    [LaMDA(4, Alpha = 8, FreezeBSteps = 6, Name = "lamda")]
    private Module<Tensor, Tensor> q = Linear(16, 24);

    [LoLDU(4, Name = "loldu")]
    private Module<Tensor, Tensor> v = Linear(16, 16);

    [RandLoRA(4, Alpha = 8, Name = "randlora")]
    private Module<Tensor, Tensor> f = Linear(16, 16);

    [SaRA(2, Name = "sara")]
    private Module<Tensor, Tensor> g = Linear(16, 16);

    private Module<Tensor, Tensor> head = Linear(72, 5);

    public LiteratureNet() : base(nameof(LiteratureNet)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x), g.forward(x) }, -1));
}

public sealed class LiteratureAdaptersTests
{
    private static readonly string[] Adapters = { "lamda", "loldu", "randlora", "sara" };

    [Fact]
    public void AllFourTrainTogetherMergeExactlySaveAndReload()
    {
        using var scope = NewDisposeScope();
        manual_seed(31);
        var model = new LiteratureNet();
        model.SetActiveAdapters(Adapters);
        Assert.Equal(Adapters, model.AdapterLayers.SelectMany(l => l.Layer.ActiveAdapters).OrderBy(a => a, System.StringComparer.Ordinal));

        var x = randn(64, 16);
        var y = sin(x[.., ..5].mul(2));
        double before;
        using (no_grad()) before = functional.mse_loss(model.forward(x), y).item<float>();
        var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-2));
        double last = 0;
        for (int i = 0; i < 40; i++) last = trainer.Step(() => functional.mse_loss(model.forward(x), y));
        Assert.True(last < 0.9 * before, $"loss {before} -> {last}");
        // Every method's own parameters moved: each adapter took part in training.
        foreach (var (path, layer) in model.AdapterLayers)
        {
            var adapter = layer.ActiveAdapters.Single();
            Assert.Contains(layer.AdapterParameters(adapter), p => p.Parameter.requires_grad);
        }

        model.eval();
        Tensor expected;
        using (no_grad()) expected = model.forward(x).detach().clone();
        model.MergeAdapters();
        using (no_grad()) TensorAssert.Close(expected, model.forward(x), atol: 1e-5);
        model.UnmergeAdapters();
        using (no_grad()) TensorAssert.Close(expected, model.forward(x), atol: 1e-5);

        using var folder = new TempFolder();
        model.SaveAdapters(folder.Path);
        foreach (var adapter in Adapters)
            Assert.True(File.Exists(Path.Combine(folder.Path, adapter, "adapter_config.json")), adapter);

        // The same base weights (LoLDU's LU and SaRA's selection are of W), fresh adapters, then the files.
        manual_seed(31);
        var again = new LiteratureNet();
        again.SetActiveAdapters(Adapters);
        again.eval();
        using (no_grad()) Assert.False(TensorAssert.Same(expected, again.forward(x)));
        again.LoadAdapters(folder.Path);
        using (no_grad())
        {
            TensorAssert.Close(expected, again.forward(x), atol: 1e-5);
            again.MergeAdapters();
            TensorAssert.Close(expected, again.forward(x), atol: 1e-5);
        }
    }
}
