using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime;
using Peft.Runtime.IO;
using Peft.Tests.SharedData;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.EndToEnd;

/// <summary>
/// One adapter per method written by Hugging Face PEFT 0.20 itself (<c>shared/fixtures/peft-written</c>, see its
/// README): each loads onto the matching DSL model and gives PEFT's outputs, unmerged and merged; saving it again
/// gives PEFT's file back, tensors and config.
/// </summary>
/// <remarks>
/// With the environment variable <c>PEFT_INTEROP_OUT=DIR</c> set, <see cref="PeftDslWrittenAdapters"/> also writes,
/// per case, an adapter PeftDsl made (its own random values) in the layout <c>tools/peft-interop/peft_interop.py check
/// DIR</c> reads — <c>DIR/&lt;case&gt;/adapter</c>, <c>base.safetensors</c>, <c>reference.safetensors</c> (x, PeftDsl's
/// y) — so real PEFT can load every method's file PeftDsl wrote (see tools/peft-interop/README.md).
/// </remarks>
public sealed class PeftWrittenTests
{
    public const string Folder = "fixtures/peft-written";

    /// <summary>Set to a folder, the PeftWritten tests also write PeftDsl's adapters there for PEFT's <c>check</c>.</summary>
    public const string InteropOutVariable = "PEFT_INTEROP_OUT";

    // Output tolerance: |y_peftdsl − y_peft| ≤ 1e-5 + 1e-5·|y_peft| entry-wise (float32 on both sides; observed ≈ 1e-7).
    private const double Rtol = 1e-5, Atol = 1e-5;

    public static TheoryData<string> Cases => new() { "lora", "lora-rslora", "dora", "miss", "miss-bat", "vera", "loha", "lokr", "ia3" };

    /// <summary>The DSL model that declares what case <paramref name="name"/>'s adapter_config.json holds.</summary>
    internal static (IPeftModel Model, nn.Module<Tensor, Tensor> Module) Create(string name) => name switch
    {
        "lora" => Pair(new WrittenLoRA()),
        "lora-rslora" => Pair(new WrittenRsLoRA()),
        "dora" => Pair(new WrittenDoRA()),
        "miss" => Pair(new WrittenMiss()),
        "miss-bat" => Pair(new WrittenMissBat()),
        "vera" => Pair(new WrittenVeRA()),
        "loha" => Pair(new WrittenLoHa()),
        "lokr" => Pair(new WrittenLoKr()),
        "ia3" => Pair(new WrittenIA3()),
        "lamda" => Pair(new WrittenLaMDA()),
        "loldu" => Pair(new WrittenLoLDU()),
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "no such case"),
    };

    private static (IPeftModel, nn.Module<Tensor, Tensor>) Pair<T>(T model) where T : nn.Module<Tensor, Tensor>, IPeftModel => (model, model);

    internal static string CaseFolder(string name) => Path.Combine(SharedFolder.Require(Folder), name);

    /// <summary>
    /// Loads a plain PyTorch state dict (<c>q.weight</c>, <c>head.bias</c>, ...) into the model: a key lands on the
    /// parameter of that name, or on <c>&lt;module&gt;.base_layer.&lt;leaf&gt;</c> where the module is wrapped. Every key
    /// must land and every base parameter must be given.
    /// </summary>
    internal static void LoadBase(nn.Module<Tensor, Tensor> module, string file)
    {
        using var weights = Safetensors.Read(file);
        var state = module.state_dict();
        var given = new HashSet<string>(StringComparer.Ordinal);
        using (no_grad())
            foreach (var (key, tensor) in weights.Tensors)
            {
                int dot = key.LastIndexOf('.');
                string wrapped = key[..dot] + ".base_layer" + key[dot..];
                string target = state.ContainsKey(wrapped) ? wrapped : state.ContainsKey(key) ? key
                    : throw new InvalidDataException($"{file}: key '{key}' matches no parameter of the model");
                Assert.Equal(tensor.shape, state[target].shape);
                state[target].copy_(tensor);
                given.Add(target);
            }
        var missing = module.named_parameters().Select(p => p.name)
            .Where(n => (n.Contains(".base_layer.") || !n.Contains('.') || n.StartsWith("head.", StringComparison.Ordinal)) && !given.Contains(n)).ToList();
        Assert.True(missing.Count == 0, $"{file} gives no value for {string.Join(", ", missing)}");
    }

    [SharedDataTheory(Folder)]
    [MemberData(nameof(Cases))]
    public void PeftsFileGivesPeftsOutputsUnmergedAndMerged(string name)
    {
        using var scope = NewDisposeScope();
        string dir = CaseFolder(name);
        var (model, module) = Create(name);
        LoadBase(module, Path.Combine(dir, "base.safetensors"));
        model.LoadAdapters(dir);
        module.eval();

        using var reference = Safetensors.Read(Path.Combine(dir, "reference.safetensors"));
        var x = reference.Tensors["x"];
        using var _ = no_grad();
        TensorAssert.Close(reference.Tensors["y"], module.forward(x), Rtol, Atol);
        model.MergeAdapters();
        TensorAssert.Close(reference.Tensors["y_merged"], module.forward(x), Rtol, Atol);
        model.UnmergeAdapters();
        TensorAssert.Close(reference.Tensors["y"], module.forward(x), Rtol, Atol);
    }

    /// <summary>
    /// Config fields not compared: PEFT's bookkeeping (version, the auto-mapping of the Python class, the hub
    /// revision) and fields whose value only says how a fresh adapter was initialised.
    /// </summary>
    private static readonly HashSet<string> NotCompared = new(StringComparer.Ordinal)
    {
        "peft_version", "auto_mapping", "revision", "base_model_name_or_path", "task_type",
    };

    [SharedDataTheory(Folder)]
    [MemberData(nameof(Cases))]
    public void SavingPeftsFileAgainGivesPeftsTensorsAndConfig(string name)
    {
        using var scope = NewDisposeScope();
        string dir = CaseFolder(name);
        string outDir = Path.Combine(Path.GetTempPath(), "peft-written-" + name + "-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (model, module) = Create(name);
            LoadBase(module, Path.Combine(dir, "base.safetensors"));
            model.LoadAdapters(dir);
            model.SaveAdapters(outDir);

            using var original = Safetensors.Read(Path.Combine(dir, PeftAdapterFormat.WeightsFileName));
            using var written = Safetensors.Read(Path.Combine(outDir, PeftAdapterFormat.WeightsFileName));
            Assert.Equal(original.Tensors.Keys.OrderBy(k => k, StringComparer.Ordinal), written.Tensors.Keys.OrderBy(k => k, StringComparer.Ordinal));
            foreach (var (key, tensor) in original.Tensors)
            {
                Assert.True(tensor.dtype == written.Tensors[key].dtype, $"{key}: dtype {written.Tensors[key].dtype}, PEFT's {tensor.dtype}");
                TensorAssert.Equal(tensor, written.Tensors[key]);
            }
            Assert.Equal(original.Metadata, written.Metadata);

            var peft = AdapterConfig.Read(Path.Combine(dir, AdapterConfig.FileName));
            var ours = AdapterConfig.Read(Path.Combine(outDir, AdapterConfig.FileName));
            // Every field PeftDsl writes is one PEFT 0.20 knows (older PEFT crashes on unknown ones) ...
            var unknown = ours.Select(p => p.Key).Where(k => !peft.ContainsKey(k)).ToList();
            Assert.True(unknown.Count == 0, $"{name}: PeftDsl writes fields PEFT's config lacks: {string.Join(", ", unknown)}");
            // ... with PEFT's value, to the byte of its JSON.
            var differing = ours.Where(p => !NotCompared.Contains(p.Key))
                .Where(p => Json(p.Value) != Json(peft[p.Key]))
                .Select(p => $"{p.Key}: ours {Json(p.Value)}, PEFT's {Json(peft[p.Key])}").ToList();
            Assert.True(differing.Count == 0, $"{name}: config fields differ from PEFT's: {string.Join("; ", differing)}");
            // The fields that decide what PEFT builds are all written.
            foreach (var field in new[] { "peft_type", "target_modules" })
                Assert.True(ours.ContainsKey(field), $"{name}: PeftDsl's config lacks '{field}'");
        }
        finally
        {
            if (Directory.Exists(outDir)) Directory.Delete(outDir, true);
        }
    }

    /// <summary>
    /// A field's JSON text. PEFT writes its set-valued fields (<c>target_modules</c>, <c>feedforward_modules</c>) as
    /// <c>list(set)</c>, in Python's hash order, which changes from run to run: those compare as sorted lists.
    /// </summary>
    private static string Json(JsonNode? node) => node switch
    {
        null => "null",
        JsonArray list when list.All(n => n is JsonValue v && v.TryGetValue<string>(out _)) =>
            new JsonArray(list.Select(n => n!.GetValue<string>()).Order(StringComparer.Ordinal).Select(s => (JsonNode?)JsonValue.Create(s)).ToArray()).ToJsonString(),
        _ => node.ToJsonString(),
    };

    /// <summary>
    /// PeftDsl's own adapter of every method (random values, not PEFT's) saves, reloads onto a fresh model and gives
    /// the same outputs; with <c>PEFT_INTEROP_OUT</c> set, it is also written where PEFT's <c>check</c> reads it.
    /// </summary>
    [SharedDataTheory(Folder)]
    [MemberData(nameof(Cases))]
    public void PeftDslWrittenAdapters(string name)
    {
        using var scope = NewDisposeScope();
        string dir = CaseFolder(name);
        using var reference = Safetensors.Read(Path.Combine(dir, "reference.safetensors"));
        WriteOwnAdapter(name, dir, reference.Tensors["x"], (y, adapterDir) =>
        {
            Assert.False(TensorAssert.Same(reference.Tensors["y"], y)); // our values, not PEFT's
            var (again, againModule) = Create(name);
            LoadBase(againModule, Path.Combine(dir, "base.safetensors"));
            again.LoadAdapters(adapterDir);
            againModule.eval();
            using (no_grad()) TensorAssert.Equal(y, againModule.forward(reference.Tensors["x"]));
        });
    }

    /// <summary>
    /// Gives case <paramref name="name"/>'s DSL model, on <paramref name="dir"/>'s base weights, its own random adapter
    /// (seed 7), computes its eval output y for <paramref name="x"/> and saves the adapter, then runs
    /// <paramref name="check"/>(y, adapter folder). The folder is temporary, or with <c>PEFT_INTEROP_OUT</c> set
    /// <c>DIR/&lt;name&gt;/adapter</c> beside <c>base.safetensors</c> and <c>reference.safetensors</c> (x, y): what PEFT's
    /// <c>check</c> reads.
    /// </summary>
    private static void WriteOwnAdapter(string name, string dir, Tensor x, Action<Tensor, string> check)
    {
        string? interopRoot = Environment.GetEnvironmentVariable(InteropOutVariable);
        string caseDir = string.IsNullOrEmpty(interopRoot)
            ? Path.Combine(Path.GetTempPath(), "peftdsl-written-" + name + "-" + Guid.NewGuid().ToString("N"))
            : Path.Combine(interopRoot, name);
        try
        {
            var (model, module) = Create(name);
            LoadBase(module, Path.Combine(dir, "base.safetensors"));
            RemakeOnBase(model);
            Randomise(model, seed: 7);
            module.eval();
            Tensor y;
            using (no_grad()) y = module.forward(x);
            string adapterDir = Path.Combine(caseDir, "adapter");
            model.SaveAdapters(adapterDir);
            WriteBaseAndReference(dir, caseDir, x, y);
            check(y, adapterDir);
        }
        finally
        {
            if (string.IsNullOrEmpty(interopRoot) && Directory.Exists(caseDir)) Directory.Delete(caseDir, true);
        }
    }

    /// <summary>
    /// What PEFT's <c>check</c> reads beside <c>&lt;caseDir&gt;/adapter</c>: the case <paramref name="dir"/>'s
    /// <c>base.safetensors</c>, copied, and <c>reference.safetensors</c> holding <paramref name="x"/> and PeftDsl's
    /// <paramref name="y"/>.
    /// </summary>
    internal static void WriteBaseAndReference(string dir, string caseDir, Tensor x, Tensor y)
    {
        Directory.CreateDirectory(caseDir);
        File.Copy(Path.Combine(dir, "base.safetensors"), Path.Combine(caseDir, "base.safetensors"), overwrite: true);
        Safetensors.Write(Path.Combine(caseDir, "reference.safetensors"),
            new[] { new KeyValuePair<string, Tensor>("x", x), new KeyValuePair<string, Tensor>("y", y) });
    }

    /// <summary>Methods saved as exactly a plain LoRA: PEFT's "lora" case's model, base weights and input serve them.</summary>
    public static TheoryData<string> AsLoRACases => new() { "lamda", "loldu" };

    /// <summary>
    /// PEFT's own LoRA file (the "lora" case) loads onto the method's DSL model and gives PEFT's outputs (LoLDU refuses it:
    /// PEFT's random LoRA is no LoLDU update of the layer's weight); the method's own adapter (random values) saves as a
    /// LoRA file that reloads in the method and in <c>[LoRA]</c>, and with <c>PEFT_INTEROP_OUT</c> set is written where
    /// PEFT's <c>check</c> loads it onto the plain torch model.
    /// </summary>
    [SharedDataTheory(Folder)]
    [MemberData(nameof(AsLoRACases))]
    public void SavedAsLoRABothWays(string name)
    {
        using var scope = NewDisposeScope();
        string dir = CaseFolder("lora");
        using var reference = Safetensors.Read(Path.Combine(dir, "reference.safetensors"));
        var x = reference.Tensors["x"];

        var (peftModel, peftModule) = Create(name);
        LoadBase(peftModule, Path.Combine(dir, "base.safetensors"));
        RemakeOnBase(peftModel);
        if (name == "loldu")
        {
            var ex = Assert.Throws<InvalidDataException>(() => peftModel.LoadAdapters(dir));
            Assert.Contains("lora_A is not this layer's U_r", ex.Message);
        }
        else
        {
            peftModel.LoadAdapters(dir);
            peftModule.eval();
            using (no_grad()) TensorAssert.Close(reference.Tensors["y"], peftModule.forward(x), Rtol, Atol);
        }

        WriteOwnAdapter(name, dir, x, (y, adapterDir) =>
        {
            Assert.Equal("LORA", JsonNode.Parse(File.ReadAllText(Path.Combine(adapterDir, AdapterConfig.FileName)))!["peft_type"]!.GetValue<string>());
            foreach (var reader in new[] { name, "lora" })
            {
                var (again, againModule) = Create(reader);
                LoadBase(againModule, Path.Combine(dir, "base.safetensors"));
                RemakeOnBase(again);
                again.LoadAdapters(adapterDir);
                againModule.eval();
                using (no_grad()) TensorAssert.Close(y, againModule.forward(x), Rtol, Atol);
            }
        });
    }

    /// <summary>
    /// Makes LaMDA's and LoLDU's adapters again on the base weights just loaded: both read W when an adapter is made
    /// (LaMDA's singular vectors, LoLDU's LU factors), as a model that loads a pre-trained checkpoint after construction
    /// must (the samples' AdapterSetup.Recreate does the same).
    /// </summary>
    private static void RemakeOnBase(IPeftModel model)
    {
        foreach (var (_, layer) in model.AdapterLayers)
            switch (layer)
            {
                case Peft.Runtime.Adapters.LaMDALinear lamda:
                    var lamdaOptions = lamda.Options("default");
                    lamda.DeleteAdapter("default");
                    lamda.AddAdapter("default", lamdaOptions);
                    break;
                case Peft.Runtime.Adapters.LoLDULinear loldu:
                    var lolduOptions = loldu.Options("default");
                    loldu.DeleteAdapter("default");
                    loldu.AddAdapter("default", lolduOptions);
                    break;
            }
    }

    /// <summary>Moves every adapter parameter (and [Trainable] module) off its start, as peft_interop.py's randomise does.</summary>
    internal static void Randomise(IPeftModel model, long seed)
    {
        var g = new Generator().manual_seed(seed);
        using var _ = no_grad();
        foreach (var p in model.TrainableParameters())
        {
            var noise = randn(p.shape, generator: g) * 0.1;
            p.copy_(p.shape.Length > 0 && IsScale(model, p) ? noise + 1 : noise);
        }
    }

    private static bool IsScale(IPeftModel model, TorchSharp.Modules.Parameter p) =>
        model.AdapterLayers.Any(l => l.Layer.AdapterNames.SelectMany(a => l.Layer.AdapterParameters(a))
            .Any(n => ReferenceEquals(n.Parameter, p) || n.Parameter.Handle == p.Handle
                      ? n.Name.Contains("magnitude") || n.Name.Contains("ia3_l") || n.Name.Contains("lambda")
                      : false));
}
