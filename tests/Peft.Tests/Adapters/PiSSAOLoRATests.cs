using System;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime;
using Peft.Runtime.Adapters;
using Peft.Runtime.IO;
using Peft.Tests.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.Adapters;

/// <summary>The inits that read the base weight: PiSSA (SVD) and OLoRA (QR).</summary>
public class PiSSAOLoRATests
{
    private static (LoRALinear Layer, Tensor OriginalWeight) Make(long inF, long outF, LoRAOptions options, int seed = 1)
    {
        manual_seed(seed);
        var linear = nn.Linear(inF, outF);
        var w0 = linear.weight!.detach().clone();
        return (new LoRALinear("T.q", linear, "default", options), w0);
    }

    private static Tensor W(LoRALinear layer) => layer.BaseLayer.get_parameter("weight")!;

    [Theory]
    [InlineData(24, 16, 4, 8.0, false)]
    [InlineData(16, 24, 6, 16.0, false)]
    [InlineData(20, 20, 5, 8.0, true)]
    public void PiSSAStartsAtThePrincipalPartAndLeavesTheResidual(long inF, long outF, int rank, double alpha, bool rs)
    {
        using var scope = NewDisposeScope();
        var options = new LoRAOptions { Rank = rank, Alpha = alpha, UseRsLora = rs, Init = LoRAInit.PiSSA };
        var (layer, w0) = Make(inF, outF, options);
        double s = options.Scaling;

        // W = U diag(S) Vᵀ; S_r = S[:r] / s; A = diag(√S_r) Vᵀ[:r]; B = U[:, :r] diag(√S_r).
        var (u, sv, vh) = linalg.svd(w0, fullMatrices: false);
        var sr = sv[..rank] / s;
        var a = diag(sr.sqrt()).matmul(vh[..rank]);
        var b = u[.., ..rank].matmul(diag(sr.sqrt()));
        TensorAssert.Close(a, layer.LoraA("default"), rtol: 1e-5, atol: 1e-6);
        TensorAssert.Close(b, layer.LoraB("default"), rtol: 1e-5, atol: 1e-6);
        // s·B·A is the best rank-r approximation U_r diag(S_r·s) V_rᵀ, and the base weight is what remains.
        var principal = u[.., ..rank].matmul(diag(sv[..rank])).matmul(vh[..rank]);
        TensorAssert.Close(principal, layer.DeltaWeight("default"), rtol: 1e-4, atol: 1e-5);
        TensorAssert.Close(w0 - principal, W(layer), rtol: 1e-4, atol: 1e-5);

        AssertStartsAtTheOriginalAndMergeRestoresIt(layer, w0, inF);
    }

    [Theory]
    [InlineData(24, 16, 4, 8.0)]
    [InlineData(16, 24, 6, 16.0)]
    [InlineData(20, 20, 20, 4.0)]
    public void OLoRAStartsAtTheQRFactorsAndLeavesTheResidual(long inF, long outF, int rank, double alpha)
    {
        using var scope = NewDisposeScope();
        var options = new LoRAOptions { Rank = rank, Alpha = alpha, Init = LoRAInit.OLoRA };
        var (layer, w0) = Make(inF, outF, options);

        // Q, R = qr(W); A = R[:r], B = Q[:, :r]; base ← W − s·B·A.
        var (q, r) = linalg.qr(w0);
        TensorAssert.Close(r[..rank], layer.LoraA("default"), rtol: 1e-5, atol: 1e-6);
        TensorAssert.Close(q[.., ..rank], layer.LoraB("default"), rtol: 1e-5, atol: 1e-6);
        // B has orthonormal columns.
        TensorAssert.Close(eye(rank), layer.LoraB("default").t().matmul(layer.LoraB("default")), atol: 1e-5);
        TensorAssert.Close(w0 - q[.., ..rank].matmul(r[..rank]) * options.Scaling, W(layer), rtol: 1e-5, atol: 1e-5);

        AssertStartsAtTheOriginalAndMergeRestoresIt(layer, w0, inF);
    }

    private static void AssertStartsAtTheOriginalAndMergeRestoresIt(LoRALinear layer, Tensor w0, long inF)
    {
        var x = randn(5, inF);
        var bias = layer.BaseLayer.get_parameter("bias")!;
        var original = nn.functional.linear(x, w0, bias);
        Assert.False(original.allclose(layer.BaseLayer.forward(x), rtol: 1e-3)); // the base weight did change
        TensorAssert.Close(original, layer.forward(x), rtol: 1e-5, atol: 1e-5);
        // W_residual + ΔW = W.
        TensorAssert.Close(w0, W(layer) + layer.DeltaWeight("default"), rtol: 1e-5, atol: 1e-5);
        var residual = W(layer).detach().clone();
        layer.Merge(new[] { "default" });
        TensorAssert.Close(w0, W(layer), rtol: 1e-5, atol: 1e-5);
        TensorAssert.Close(original, layer.forward(x), rtol: 1e-5, atol: 1e-5);
        layer.Unmerge();
        TensorAssert.Close(residual, W(layer), rtol: 1e-5, atol: 1e-6);
    }

    [Theory]
    [InlineData(LoRAInit.PiSSA)]
    [InlineData(LoRAInit.OLoRA)]
    public void DoRAOnAResidualInitStartsAtTheOriginalLayer(LoRAInit init)
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        var linear = nn.Linear(16, 12);
        var w0 = linear.weight!.detach().clone();
        var layer = new LoRALinear("T.q", linear, "default", new DoRAOptions { Rank = 4, Init = init });
        TensorAssert.Close(w0.square().sum(1).sqrt(), layer.Magnitude("default"), rtol: 1e-5, atol: 1e-5);
        var x = randn(3, 16);
        TensorAssert.Close(nn.functional.linear(x, w0, linear.bias!), layer.forward(x), rtol: 1e-5, atol: 1e-5);
        layer.Merge(new[] { "default" });
        TensorAssert.Close(w0, W(layer), rtol: 1e-5, atol: 1e-5);
    }

    [Fact]
    public void AFloat64LayerIsDecomposedInFloat64()
    {
        using var scope = NewDisposeScope();
        manual_seed(6);
        var linear = nn.Linear(16, 16, dtype: float64);
        var w0 = linear.weight!.detach().clone();
        var layer = new LoRALinear("T.q", linear, "default", new LoRAOptions { Rank = 4, Init = LoRAInit.PiSSA });
        Assert.Equal(float64, layer.LoraA("default").dtype);
        TensorAssert.Close(w0, W(layer) + layer.DeltaWeight("default"), rtol: 1e-12, atol: 1e-12);
    }

    [Fact]
    public void TrainingFromPiSSAReducesTheLoss()
    {
        using var scope = NewDisposeScope();
        var (layer, w0) = Make(16, 16, new LoRAOptions { Rank = 4, Init = LoRAInit.PiSSA }, seed: 8);
        var x = randn(128, 16);
        var target = w0 + randn(16, 2).matmul(randn(2, 16)) * 0.2;
        var y = nn.functional.linear(x, target, layer.BaseLayer.get_parameter("bias")!.detach());
        var optimizer = optim.Adam(layer.parameters().Where(p => p.requires_grad), lr: 0.01);
        double first = 0, last = 0;
        for (int step = 0; step < 200; step++)
        {
            using var stepScope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = nn.functional.mse_loss(layer.forward(x), y);
            loss.backward();
            optimizer.step();
            if (step == 0) first = loss.item<float>();
            last = loss.item<float>();
        }
        Assert.Null(W(layer).grad);
        Assert.True(last < first * 0.2, $"loss {first} → {last}");
    }

    [Fact]
    public void AnUnknownInitValueFailsAtRegistration()
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            LoRA.Wrap(nn.Linear(8, 8), "Demo.Block.q", "default", new LoRAOptions { Rank = 2, Init = (LoRAInit)7 }));
        Assert.StartsWith("Demo.Block.q: LoRA init 7", ex.Message);
    }

    [Fact]
    public void ADuplicateNameLeavesTheBaseWeightUnchanged()
    {
        using var scope = NewDisposeScope();
        var (layer, _) = Make(12, 12, new LoRAOptions { Rank = 2 });
        var w = W(layer).detach().clone();
        Assert.Throws<ArgumentException>(() => layer.AddAdapter("default", new LoRAOptions { Rank = 2, Init = LoRAInit.PiSSA }));
        TensorAssert.Equal(w, W(layer));
    }

    private static (nn.Module<Tensor, Tensor> Root, PeftModelCore Core, LoRALinear Q) Model(Tensor w, Tensor b, LoRAOptions options)
    {
        var linear = nn.Linear(16, 16);
        using (no_grad())
        {
            linear.weight!.copy_(w);
            linear.bias!.copy_(b);
        }
        var wrapped = LoRA.Wrap(linear, "T.q", "default", options);
        var root = nn.Sequential(("q", wrapped));
        var core = PeftModelCore.Attach(root, new PeftModelInfo("T", Array.Empty<AdapterSiteInfo>(), Array.Empty<string>(), Array.Empty<PeftModelInfo>()));
        return (root, core, (LoRALinear)wrapped);
    }

    [Theory]
    [InlineData(LoRAInit.PiSSA, "pissa")]
    [InlineData(LoRAInit.OLoRA, "olora")]
    public void SavesRelativeToTheResidualAndLoadsOntoTheSameInit(LoRAInit init, string configValue)
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        manual_seed(12);
        var w = randn(16, 16) * 0.3;
        var b = randn(16);
        var options = new LoRAOptions { Rank = 4, Alpha = 8, Init = init };
        var (root, core, q) = Model(w, b, options);
        using (no_grad())
        {
            q.LoraA("default").add_(randn_like(q.LoraA("default")) * 0.1); // as if trained
            q.LoraB("default").add_(randn_like(q.LoraB("default")) * 0.1);
        }
        core.SaveAdapters(folder.Path);
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(folder.Path, AdapterConfig.FileName)))!;
        Assert.Equal(configValue, config["init_lora_weights"]!.GetValue<string>());
        Assert.Equal(4, config["r"]!.GetValue<int>());

        // The second model starts from the same original weight; its init recomputes the same residual.
        var (root2, core2, q2) = Model(w, b, options);
        var x = randn(5, 16);
        Assert.False(root.forward(x).allclose(root2.forward(x), rtol: 1e-4));
        core2.LoadAdapters(folder.Path);
        TensorAssert.Equal(q.LoraA("default"), q2.LoraA("default"));
        TensorAssert.Close(root.forward(x), root2.forward(x), rtol: 1e-5, atol: 1e-5);

        // A plain LoRA adapter on the original weight cannot take these factors.
        var (_, core3, q3) = Model(w, b, options with { Init = LoRAInit.Default });
        var before = q3.LoraA("default").detach().clone();
        var ex = Assert.Throws<InvalidDataException>(() => core3.LoadAdapters(folder.Path));
        Assert.Contains($"T.q: adapter 'default' was initialised with Default; the file's adapter with {init}", ex.Message);
        TensorAssert.Equal(before, q3.LoraA("default"));
    }

    [Theory]
    [InlineData(LoRAInit.PiSSA, false)]
    [InlineData(LoRAInit.OLoRA, false)]
    [InlineData(LoRAInit.OLoRA, true)]
    public void CanBeSavedAsAPlainLoRAOnTheOriginalBase(LoRAInit init, bool rs)
    {
        // PEFT's conversion: A' = [A; A₀], B' = [B, −B₀], r and alpha doubled (alpha·√2 with rsLoRA).
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        manual_seed(13);
        var w = randn(16, 16) * 0.3;
        var b = randn(16);
        var options = new LoRAOptions { Rank = 4, Alpha = 8, UseRsLora = rs, Init = init };
        var (root, core, q) = Model(w, b, options);
        var a0 = q.LoraA("default").detach().clone();
        var b0 = q.LoraB("default").detach().clone();
        using (no_grad())
        {
            q.LoraA("default").add_(randn_like(q.LoraA("default")) * 0.1);
            q.LoraB("default").add_(randn_like(q.LoraB("default")) * 0.1);
        }
        PeftAdapterFormat.Save(core, folder.Path, relativeToOriginalBase: true);

        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(folder.Path, AdapterConfig.FileName)))!;
        Assert.Equal(8, config["r"]!.GetValue<int>());
        Assert.Equal(rs ? 8 * Math.Sqrt(2) : 16, config["lora_alpha"]!.GetValue<double>(), 12);
        Assert.True(config["init_lora_weights"]!.GetValue<bool>());
        using (var file = Safetensors.Read(Path.Combine(folder.Path, PeftAdapterFormat.WeightsFileName)))
        {
            var tensors = file.Tensors.ToDictionary(t => t.Key, t => t.Value);
            TensorAssert.Equal(cat(new[] { q.LoraA("default"), a0 }, 0), tensors["base_model.model.q.lora_A.weight"]);
            TensorAssert.Equal(cat(new[] { q.LoraB("default"), -b0 }, 1), tensors["base_model.model.q.lora_B.weight"]);
        }

        // A plain LoRA of rank 8 on the original weight now computes what the residual model computes.
        var (plainRoot, plainCore, _) = Model(w, b, new LoRAOptions { Rank = 8, Alpha = 1 });
        plainCore.LoadAdapters(folder.Path);
        var x = randn(5, 16);
        TensorAssert.Close(root.forward(x), plainRoot.forward(x), rtol: 1e-5, atol: 1e-5);
    }

    [Fact]
    public void ADoRAAdapterOnAResidualInitCannotBeSavedAsAPlainLoRA()
    {
        using var folder = new TempFolder();
        var root = nn.Sequential(("q", DoRA.Wrap(nn.Linear(8, 8), "T.q", "default", new DoRAOptions { Rank = 2, Init = LoRAInit.PiSSA })));
        var core = PeftModelCore.Attach(root, new PeftModelInfo("T", Array.Empty<AdapterSiteInfo>(), Array.Empty<string>(), Array.Empty<PeftModelInfo>()));
        var ex = Assert.Throws<InvalidOperationException>(() => PeftAdapterFormat.Save(core, folder.Path, relativeToOriginalBase: true));
        Assert.StartsWith("T.q: DoRA adapter 'default' was initialised with PiSSA", ex.Message);
        Assert.False(File.Exists(Path.Combine(folder.Path, AdapterConfig.FileName)));
        core.SaveAdapters(folder.Path); // relative to the residual, as PEFT saves it
        Assert.True(File.Exists(Path.Combine(folder.Path, AdapterConfig.FileName)));
    }

    [Fact]
    public void AnOLoRAFileWithAnotherScalingIsRefused()
    {
        using var scope = NewDisposeScope();
        var (layer, _) = Make(16, 16, new LoRAOptions { Rank = 4, Alpha = 8, Init = LoRAInit.OLoRA });
        var settings = (LoRAOptions)layer.Settings("default");
        layer.ApplySettings("default", settings with { Dropout = 0.1 });
        var ex = Assert.Throws<InvalidOperationException>(() => layer.ApplySettings("default", settings with { Alpha = 16 }));
        Assert.Contains("OLoRA adapter 'default' has scaling 2; the file's has 4", ex.Message);
        Assert.Equal(8, layer.Options("default").Alpha);
    }

    [Theory]
    [InlineData("true", LoRAInit.Default)]
    [InlineData("false", LoRAInit.Default)]
    [InlineData("\"gaussian\"", LoRAInit.Gaussian)]
    [InlineData("\"pissa\"", LoRAInit.PiSSA)]
    [InlineData("\"pissa_niter_4\"", LoRAInit.PiSSA)]
    [InlineData("\"olora\"", LoRAInit.OLoRA)]
    [InlineData("\"eva\"", LoRAInit.Default)]
    public void ReadsPeftsInitValues(string json, LoRAInit expected)
    {
        var config = (JsonObject)JsonNode.Parse($"{{\"peft_type\": \"LORA\", \"r\": 4, \"init_lora_weights\": {json}}}")!;
        var settings = Assert.IsType<LoRAOptions>(AdapterConfig.SettingsFor(config, "q", "adapter_config.json"));
        Assert.Equal(expected, settings.Init);
    }

    [Theory]
    [InlineData("corda")]
    [InlineData("loftq")]
    [InlineData("lora_ga")]
    public void RefusesInitsThatChangeTheBaseWeightInWaysNotReproduced(string init)
    {
        var config = (JsonObject)JsonNode.Parse($"{{\"peft_type\": \"LORA\", \"init_lora_weights\": \"{init}\"}}")!;
        var ex = Assert.Throws<InvalidDataException>(() => AdapterConfig.SettingsFor(config, "q", "x/adapter_config.json"));
        Assert.StartsWith($"x/adapter_config.json: init_lora_weights '{init}'", ex.Message);
    }
}
