using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using Peft.Runtime;
using Peft.Runtime.Adapters;

namespace Peft.Samples;

/// <summary>Puts fresh adapters on a pre-trained base.</summary>
public static class AdapterSetup
{
    /// <summary>
    /// Replaces each adapter <c>default</c> by a fresh one with the same options, on the base weights as they are now,
    /// optionally with another rank (LoRA, DoRA, LaMDA, LoLDU; α scaled with it, so α / r stays as declared) or block size (Bone), or rank (SaRA, RandLoRA).
    /// </summary>
    /// <remarks>
    /// The generated code creates the adapters when the model is constructed, from the attributes. Some methods look
    /// at the base weight when an adapter is created: DoRA's magnitude starts as the row norms of W, PiSSA factorises
    /// W. Here the base is pre-trained after construction, so the adapters are made again once it is final, exactly as
    /// a model that loads a pre-trained checkpoint must do before fine-tuning with those methods.
    /// </remarks>
    public static void Recreate(IPeftModel model, int? rank = null, int? totalSteps = null)
    {
        foreach (var (_, layer) in model.AdapterLayers)
        {
            switch (layer)
            {
                case LoRALinear lora:
                {
                    var options = lora.Options("default");
                    bool dora = lora.IsDora("default");
                    int r = rank ?? options.Rank;
                    options = options with { Rank = r, Alpha = options.Alpha * r / options.Rank };
                    lora.DeleteAdapter("default");
                    if (dora)
                        lora.AddAdapter("default", new DoRAOptions { Rank = options.Rank, Alpha = options.Alpha, Dropout = options.Dropout, UseRsLora = options.UseRsLora, Init = options.Init });
                    else
                        lora.AddAdapter("default", options);
                    break;
                }
                case BoneLinear bone:
                {
                    var options = bone.Options("default");
                    bone.DeleteAdapter("default");
                    bone.AddAdapter("default", options with { Block = rank ?? options.Block });
                    break;
                }
                case SaRALinear sara:
                {
                    // SaRA selects the smallest weights of the base as it is now: the pre-trained one.
                    var options = sara.Options("default");
                    sara.DeleteAdapter("default");
                    sara.AddAdapter("default", options with { Rank = rank ?? options.Rank });
                    break;
                }
                case AdaLoRALinear ada:
                {
                    // rank sets the initial rank (as LoRA's); the target keeps its share of it, the schedule its share of the steps.
                    var options = ada.Options("default");
                    int r = rank ?? options.InitRank;
                    int total = totalSteps ?? options.TotalSteps;
                    ada.DeleteAdapter("default");
                    ada.AddAdapter("default", options with
                    {
                        InitRank = r,
                        TargetRank = Math.Max(1, options.TargetRank * r / options.InitRank),
                        Alpha = options.Alpha * r / options.InitRank,
                        TotalSteps = total,
                        Tinit = options.Tinit * total / options.TotalSteps,
                        Tfinal = options.Tfinal * total / options.TotalSteps,
                        DeltaT = Math.Max(1, options.DeltaT * total / options.TotalSteps),
                    });
                    break;
                }
                case LaMDALinear lamda:
                {
                    // LaMDA starts from W's singular vectors: those of the pre-trained base.
                    var options = lamda.Options("default");
                    int r = rank ?? options.Rank;
                    lamda.DeleteAdapter("default");
                    lamda.AddAdapter("default", options with { Rank = r, Alpha = options.Alpha * r / options.Rank });
                    break;
                }
                case LoLDULinear loldu:
                {
                    // LoLDU's factors are the LU decomposition of W: that of the pre-trained base.
                    var options = loldu.Options("default");
                    loldu.DeleteAdapter("default");
                    loldu.AddAdapter("default", options with { Rank = rank ?? options.Rank });
                    break;
                }
                case RandLoRALinear randLora:
                {
                    // RandLoRA does not read W; only another rank needs a new adapter (its bases are shared again below).
                    if (rank is null) break;
                    var options = randLora.Options("default");
                    randLora.DeleteAdapter("default");
                    randLora.AddAdapter("default", options with { Rank = rank.Value, Alpha = options.Alpha * rank.Value / options.Rank });
                    break;
                }
                default:
                    throw new NotSupportedException($"{layer.GetType().Name}: the samples recreate LoRA, DoRA, Bone, SaRA, RandLoRA, AdaLoRA, LaMDA and LoLDU adapters only");
            }
        }
        // Methods whose layers share tensors (RandLoRA's bases) share them again at the new sizes.
        foreach (var (_, layer) in model.AdapterLayers)
            if (layer is IModelAwareAdapter aware) aware.OnModelAttached(model.AdapterLayers);
        model.SetActiveAdapters("default");
        model.FreezeBaseModel();
    }

    /// <summary>
    /// EVA's data-driven init (<c>InitializeEva</c>): forward passes over 16 batches of 32 sequences drawn from
    /// <paramref name="data"/> (the fine-tuning text) until the components converge. Returns its wall time in seconds.
    /// </summary>
    public static double InitializeEva(TinyTransformer model, CharTokenizer tokenizer, long[] data, Random random)
    {
        var batches = Enumerable.Range(0, 16).Select(_ => tokenizer.Batch(data, 32, model.Context, random).Inputs).ToList();
        var clock = Stopwatch.StartNew();
        model.InitializeEva(batches);
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// Copies every parameter that is not an adapter's (embeddings, norms, base layers, the head) from
    /// <paramref name="source"/> into <paramref name="target"/>: the same pre-trained base under any adapter method,
    /// since every method keeps the wrapped layer as <c>base_layer</c>.
    /// </summary>
    public static void CopyBaseWeights(TinyTransformer source, TinyTransformer target)
    {
        var adapterParameters = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (path, layer) in target.AdapterLayers)
            foreach (var adapter in layer.AdapterNames)
                foreach (var (name, _) in layer.AdapterParameters(adapter))
                    adapterParameters.Add(path + "." + name);
        var from = source.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        using var _ = TorchSharp.torch.no_grad();
        foreach (var (name, parameter) in target.named_parameters())
        {
            if (adapterParameters.Contains(name)) continue;
            if (!from.TryGetValue(name, out var value))
                throw new InvalidOperationException($"the pre-trained model has no parameter '{name}'");
            parameter.copy_(value);
        }
    }
}
